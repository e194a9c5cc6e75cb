#!/usr/bin/env bash
# Installs what ferry needs to build, test and demo, and only what is missing. Idempotent.
set -euo pipefail

PACKAGES=(libssh-dev libcurl4-openssl-dev libdnnl-dev zlib1g-dev pkg-config openssh-server openssh-client
          dataset-fashion-mnist iproute2 tmux rsync dropbear-bin slurm-wlm munge
          slurmdbd mariadb-server)

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null; then SUDO="sudo"; else
        echo "install-deps: not root and no sudo; install these yourself: ${PACKAGES[*]}" >&2; fi
fi

missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "install-deps: installing ${missing[*]}"
    if [ "$(id -u)" -eq 0 ] || [ -n "$SUDO" ]; then
        $SUDO apt-get update -q
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
    else
        exit 1
    fi
else
    echo "install-deps: system packages present"
fi

# numpy for the python3 first on PATH (fixtures, benchmarks). apt's python3-numpy only serves
# /usr/bin/python3, so probe the interpreter that will actually run.
if command -v python3 >/dev/null; then
    if ! python3 -c 'import numpy' 2>/dev/null; then
        echo "install-deps: installing numpy for $(command -v python3)"
        python3 -m pip install -q numpy || python3 -m pip install -q --break-system-packages numpy
    fi
else
    echo "install-deps: no python3 on PATH; numpy-backed checks will be skipped" >&2
fi
