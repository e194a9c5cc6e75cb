#!/usr/bin/env bash
# The main job on the embedded default. For now: install deps, build release, run `ferry doctor`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
swift build -c release --product ferry
.build/release/ferry doctor
