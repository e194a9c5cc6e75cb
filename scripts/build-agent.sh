#!/usr/bin/env bash
# Builds the ferry that `ferry launch` installs on hosts without one: release, Swift runtime and
# Foundation linked in (--static-swift-stdlib), and an rpath of $ORIGIN/../lib, so the libraries
# ferry sends along (libssh, libcurl, libdnnl, libgomp, ...) are found in FERRY_HOME/lib next to
# FERRY_HOME/bin/ferry. Prints the binary's path; use it as FERRY_AGENT_BINARY.
#   scripts/build-agent.sh            build into .build-agent/
set -euo pipefail
cd "$(dirname "$0")/.."
swift build -c release --product ferry --static-swift-stdlib --scratch-path .build-agent \
    -Xlinker --disable-new-dtags -Xlinker -rpath -Xlinker '$ORIGIN/../lib' >&2
binary="$PWD/.build-agent/release/ferry"
# It must not need the Swift toolchain's libraries on the host.
if ldd "$binary" | grep -q 'libswiftCore\|libFoundation'; then
    echo "build-agent: $binary still links the Swift runtime dynamically" >&2
    exit 1
fi
echo "$binary"
