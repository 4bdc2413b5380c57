#!/usr/bin/env bash
# Set up, then run the whole test suite of the workspace (fool and crates/serve; release profile:
# shares the build with the binary), with a local MLflow server (scripts/setup/mlflow_server.sh).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup/setup.sh"
# Chromium and playwright-core for the HTML report's browser test (tests/it/report_html.rs).
bash "$ROOT/scripts/setup/browser.sh"
# The MLflow tracking server of the --mlflow tests (tests/it/mlflow.rs), stopped on exit
# (cargo's exit code is kept).
MLFLOW_SERVER="$ROOT/scripts/setup/mlflow_server.sh"
eval "$(bash "$MLFLOW_SERVER" start)"
trap 'bash "$MLFLOW_SERVER" stop' EXIT
cargo test --release --workspace "$@"
