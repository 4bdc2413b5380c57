#!/usr/bin/env bash
# Set up, then run the whole test suite of the workspace (fool and crates/serve; release profile:
# shares the build with the binary).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup/setup.sh"
cargo test --release --workspace "$@"
