#!/usr/bin/env bash
# Idempotent: installs scripts/serve/requirements.txt (FastAPI, uvicorn, Pillow, tritonclient[http])
# into the project virtualenv .venv, only when they are not importable yet. Needs .venv from
# scripts/setup/setup.sh.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PY="$ROOT/.venv/bin/python"
if [ ! -x "$PY" ]; then
    echo "error: $PY missing; run scripts/setup/setup.sh first" >&2
    exit 1
fi
if "$PY" -c "import fastapi, uvicorn, PIL, tritonclient.http" 2>/dev/null; then
    echo "[setup_py] fastapi, uvicorn, pillow, tritonclient already in $ROOT/.venv" >&2
    exit 0
fi
echo "[setup_py] installing scripts/serve/requirements.txt into $ROOT/.venv" >&2
"$PY" -m pip install --quiet --disable-pip-version-check -r "$ROOT/scripts/serve/requirements.txt"
"$PY" -c "import fastapi, uvicorn, PIL, tritonclient.http"
