#!/usr/bin/env bash
# A throwaway dropbear on 127.0.0.1 with no sftp-server (a minimal host: exec channels only), for
# ferry's no-SFTP tests. Root only: it runs in a mount namespace of its own where /etc/passwd gives
# the user a home in the temp folder (its .ssh/authorized_keys there) and dropbear's sftp-server is
# /dev/null (or FERRY_TEST_DROPBEAR_SFTP_SERVER, a stand-in program); nothing outside the folder changes.
#   scripts/test-dropbear.sh start|env|stop     (folder: FERRY_TEST_DROPBEAR_DIR)
# `env` prints the same FERRY_TEST_SSH_* names as test-sshd.sh, for this server.
set -euo pipefail
DIR="${FERRY_TEST_DROPBEAR_DIR:-${TMPDIR:-/tmp}/ferry-test-dropbear-$(id -u)}"
running() { [ -f "$DIR/pid" ] && kill -0 "$(cat "$DIR/pid")" 2>/dev/null; }

start() {
    if running && [ -f "$DIR/port" ]; then echo "test dropbear already running on 127.0.0.1:$(cat "$DIR/port")"; return 0; fi
    command -v dropbear >/dev/null || { echo "dropbear not found: run scripts/install-deps.sh (dropbear-bin)" >&2; exit 1; }
    [ "$(id -u)" -eq 0 ] || { echo "test-dropbear.sh needs root (a mount namespace hides sftp-server)" >&2; exit 1; }
    rm -rf "$DIR"; mkdir -p "$DIR/home/.ssh"; chmod 700 "$DIR" "$DIR/home" "$DIR/home/.ssh"
    dropbearkey -t ed25519 -f "$DIR/host_key" >/dev/null 2>&1
    ssh-keygen -q -t ed25519 -N '' -C ferry-test-client -f "$DIR/client_ed25519"
    cp "$DIR/client_ed25519.pub" "$DIR/home/.ssh/authorized_keys"; chmod 600 "$DIR/home/.ssh/authorized_keys"
    awk -F: -v OFS=: -v u="$(id -un)" -v h="$DIR/home" '$1 == u { $6 = h } { print }' /etc/passwd > "$DIR/passwd"
    local sftp port
    # Every line read (grep -m1 would stop strings early: SIGPIPE, and pipefail added a second path).
    sftp=$(strings "$(command -v dropbear)" | grep 'sftp-server$' | tail -n 1 || true)
    [ -n "$sftp" ] || sftp=/usr/lib/sftp-server
    for _ in $(seq 1 20); do
        port=$(( 20000 + RANDOM % 40000 ))
        unshare -m --propagation private bash -c '
            set -e
            # Hold none of our caller'"'"'s descriptors (a test waiting for its pipes to close).
            for fd in $(ls /proc/self/fd); do [ "$fd" -gt 2 ] && eval "exec $fd>&-" 2>/dev/null || true; done
            if [ -e "$2" ]; then mount --bind "$4" "$2"; fi
            mount --bind "$1/passwd" /etc/passwd
            exec dropbear -F -E -s -r "$1/host_key" -p "127.0.0.1:$3" -P "$1/pid"' sh "$DIR" "$sftp" "$port" "${FERRY_TEST_DROPBEAR_SFTP_SERVER:-/dev/null}" \
            </dev/null >"$DIR/dropbear.log" 2>&1 &
        for _ in $(seq 1 50); do running && break; sleep 0.1; done
        if running; then
            echo "$port" > "$DIR/port"
            printf '[127.0.0.1]:%s %s\n' "$port" "$(dropbearkey -y -f "$DIR/host_key" | grep '^ssh-' | cut -d' ' -f1,2)" > "$DIR/known_hosts"
            echo "test dropbear running on 127.0.0.1:$port ($DIR)"
            return 0
        fi
    done
    echo "could not start the test dropbear: $(tail -3 "$DIR/dropbear.log" 2>/dev/null)" >&2; exit 1
}

env_vars() {
    running && [ -f "$DIR/port" ] || { echo "test dropbear is not running: scripts/test-dropbear.sh start" >&2; exit 1; }
    local fp
    fp=$(ssh-keygen -l -E sha256 -f "$DIR/known_hosts" | awk '{print $2}')
    cat <<VARS
export FERRY_TEST_SSH_HOST=127.0.0.1
export FERRY_TEST_SSH_PORT=$(cat "$DIR/port")
export FERRY_TEST_SSH_USER=$(id -un)
export FERRY_TEST_SSH_KEY=$DIR/client_ed25519
export FERRY_TEST_SSH_KNOWN_HOSTS=$DIR/known_hosts
export FERRY_TEST_SSH_HOST_FINGERPRINT=$fp
export FERRY_TEST_SSHD_DIR=$DIR
VARS
}

stop() {
    # KILL: started from a test process, it may have SIGTERM blocked (a mask children inherit).
    if running; then kill -KILL "$(cat "$DIR/pid")" 2>/dev/null || true; fi
    # Its session processes (same command line, this folder's host key) outlive the listener.
    for pid in $(pgrep -f -- "-r $DIR/host_key " 2>/dev/null); do kill -KILL "$pid" 2>/dev/null || true; done
    rm -rf "$DIR"
}

case "${1:-}" in
    start) start ;;
    env) env_vars ;;
    stop) stop ;;
    *) echo "usage: $0 start|env|stop" >&2; exit 2 ;;
esac
