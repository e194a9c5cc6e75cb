#!/usr/bin/env bash
# The test command: install deps, build, start the throwaway test sshd, run every test, stop it.
# Extra arguments go to `swift test` (e.g. scripts/test.sh --filter SSHTests).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
start=$(date +%s)
swift build --build-tests
echo "test.sh: build took $(( $(date +%s) - start ))s"

scripts/test-sshd.sh start
trap 'scripts/test-sshd.sh stop' EXIT
eval "$(scripts/test-sshd.sh env)"

start=$(date +%s)
set +e
swift test --skip-build "$@"
status=$?
set -e
echo "test.sh: tests took $(( $(date +%s) - start ))s, exit status $status"
exit $status
