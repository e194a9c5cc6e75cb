#!/usr/bin/env bash
# A throwaway OpenSSH sshd on 127.0.0.1 for ferry's tests: its own config, host key, client key,
# authorized_keys, known_hosts and pid file in one temp folder. Never touches the system's sshd.
#   scripts/test-sshd.sh start   start it (or reuse the one running) on a free port
#   scripts/test-sshd.sh env     print the variables the tests read, as `export NAME=value` lines
#   scripts/test-sshd.sh stop    stop it and remove its folder
# FERRY_TEST_SSHD_DIR picks the folder (a second server for jump tests lives in its own);
# FERRY_TEST_SSHD_EXTRA_CONFIG holds sshd_config lines put first (sshd takes a keyword's first value);
# FERRY_TEST_SSHD_NO_SFTP=1 leaves out the sftp Subsystem (a host where only exec channels work).
# FERRY_TEST_SLURM_CONF (scripts/test-slurm.sh env) is passed to sessions as SLURM_CONF, so the
# server is the test cluster's login node.
set -euo pipefail

DIR="${FERRY_TEST_SSHD_DIR:-${TMPDIR:-/tmp}/ferry-test-sshd-$(id -u)}"
SSHD="$(command -v sshd || true)"
[ -n "$SSHD" ] || for c in /usr/sbin/sshd /usr/local/sbin/sshd; do [ -x "$c" ] && SSHD="$c" && break; done

running() { [ -f "$DIR/sshd.pid" ] && kill -0 "$(cat "$DIR/sshd.pid")" 2>/dev/null; }

start() {
    if running && [ -f "$DIR/port" ]; then echo "test sshd already running on 127.0.0.1:$(cat "$DIR/port") ($DIR)"; return 0; fi
    [ -n "$SSHD" ] || { echo "sshd not found: run scripts/install-deps.sh (openssh-server)" >&2; exit 1; }
    command -v ssh-keygen >/dev/null || { echo "ssh-keygen not found: run scripts/install-deps.sh (openssh-client)" >&2; exit 1; }
    rm -rf "$DIR"
    mkdir -p "$DIR/host"
    chmod 700 "$DIR"
    # sshd wants its privilege-separation directory even when it will not use it.
    mkdir -p /run/sshd 2>/dev/null || true
    ssh-keygen -q -t ed25519 -N '' -C ferry-test-host -f "$DIR/ssh_host_ed25519_key"
    ssh-keygen -q -t ed25519 -N '' -C ferry-test-client -f "$DIR/client_ed25519"
    cp "$DIR/client_ed25519.pub" "$DIR/authorized_keys"
    local port attempt
    for attempt in $(seq 1 20); do
        port=$(( 20000 + RANDOM % 40000 ))
        printf '%s\n' "${FERRY_TEST_SSHD_EXTRA_CONFIG:-}" > "$DIR/sshd_config"
        cat >> "$DIR/sshd_config" <<CONF
Port $port
ListenAddress 127.0.0.1
HostKey $DIR/ssh_host_ed25519_key
PidFile $DIR/sshd.pid
AuthorizedKeysFile $DIR/authorized_keys
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
UsePAM no
StrictModes no
AllowTcpForwarding yes
AllowAgentForwarding no
X11Forwarding no
PermitTTY yes
MaxSessions 200
MaxStartups 200:30:400
LogLevel VERBOSE
$([ "${FERRY_TEST_SSHD_NO_SFTP:-}" = 1 ] || echo "Subsystem sftp internal-sftp")
SetEnv FERRY_HOME=$DIR/host${FERRY_TEST_SLURM_CONF:+ SLURM_CONF=$FERRY_TEST_SLURM_CONF}
CONF
        "$SSHD" -t -f "$DIR/sshd_config"
        if "$SSHD" -f "$DIR/sshd_config" -E "$DIR/sshd.log"; then
            for _ in $(seq 1 50); do running && break; sleep 0.1; done
            if running; then
                echo "$port" > "$DIR/port"
                printf '[127.0.0.1]:%s %s\n' "$port" "$(cut -d' ' -f1,2 "$DIR/ssh_host_ed25519_key.pub")" > "$DIR/known_hosts"
                echo "test sshd running on 127.0.0.1:$port ($DIR)"
                return 0
            fi
        fi
    done
    echo "could not start the test sshd; see $DIR/sshd.log" >&2
    exit 1
}

env_vars() {
    running && [ -f "$DIR/port" ] || { echo "test sshd is not running: scripts/test-sshd.sh start" >&2; exit 1; }
    local fp
    fp=$(ssh-keygen -l -E sha256 -f "$DIR/ssh_host_ed25519_key.pub" | awk '{print $2}')
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
    if running; then kill "$(cat "$DIR/sshd.pid")" 2>/dev/null || true; fi
    rm -rf "$DIR"
}

case "${1:-}" in
    start) start ;;
    env) env_vars ;;
    stop) stop ;;
    *) echo "usage: $0 start|env|stop" >&2; exit 2 ;;
esac
