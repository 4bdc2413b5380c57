#!/usr/bin/env bash
# The main job: set up, then turn the dog into a goldfish and check the saved PNG.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup/setup.sh"
set -x
"$FOOL" predict assets/dog.png
"$FOOL" assets/dog.png --target goldfish "$@"
"$FOOL" predict outputs/dog_goldfish.png
"$FOOL" predict outputs/dog_goldfish.png --defense jpeg:75
