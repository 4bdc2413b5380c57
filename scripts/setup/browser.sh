#!/usr/bin/env bash
# The browser of the HTML report's tests (tests/it/report_html.rs): Debian's Chromium
# (/usr/bin/chromium, installed with apt-get when missing; needs root or sudo) and
# playwright-core from npm (tests/browser/node_modules, from the committed package-lock.json;
# it downloads no browser). Idempotent: each step is skipped when done.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
say() { printf '[browser] %s\n' "$*" >&2; }
if [ ! -x /usr/bin/chromium ]; then
    say "installing Debian's chromium (apt-get)"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi
if ! command -v node >/dev/null; then
    echo "error: node is missing (Node.js 18+ runs tests/browser/check_report.mjs); install Debian's nodejs and npm" >&2
    exit 1
fi
if [ ! -d "$ROOT/tests/browser/node_modules/playwright-core" ]; then
    say "installing playwright-core into tests/browser/node_modules (npm ci)"
    (cd "$ROOT/tests/browser" && npm ci --no-audit --no-fund --silent)
fi
say "chromium $(/usr/bin/chromium --version 2>/dev/null | awk '{print $2}') and playwright-core ready"
