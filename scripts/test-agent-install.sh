#!/usr/bin/env bash
# The static-agent path end to end: builds the agent `ferry launch` installs on hosts
# (scripts/build-agent.sh), then runs the restricted-host test with it: a throwaway sshd in its own
# mount namespace where libssh, libcurl, libdnnl and libgomp are empty files; ferry installs the
# static binary and the libraries the host's loader asks for, and trains there. Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
agent=$(scripts/build-agent.sh)
echo "test-agent-install: agent $agent ($(du -h "$agent" | cut -f1)); needs: $(ldd "$agent" | awk '{print $1}' | tr '\n' ' ')"
swift build --build-tests
export FERRY_TEST_SSHD_DIR="${TMPDIR:-/tmp}/ferry-agent-install-sshd-$$"   # its own, not a shared one
scripts/test-sshd.sh start
trap 'scripts/test-sshd.sh stop' EXIT
eval "$(scripts/test-sshd.sh env)"
FERRY_TEST_AGENT_BINARY=$agent swift test --skip-build --filter JobsTests.RestrictedHostTests
