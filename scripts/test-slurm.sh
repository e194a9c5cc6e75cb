#!/usr/bin/env bash
# A throwaway one-node Slurm cluster on 127.0.0.1 for ferry's tests (see ../shared/SLURM.md):
# munged, slurmctld and slurmd in the foreground as root, no systemd, no cgroups, two fake GPUs
# (character devices), free ports, every state file in one folder. Installs nothing itself
# (scripts/install-deps.sh installs slurm-wlm and munge).
#   scripts/test-slurm.sh start   start it (or reuse the one running)
#   scripts/test-slurm.sh env     print the variables the tests read, as `export NAME=value` lines
#   scripts/test-slurm.sh stop    stop its slurmctld and slurmd by their pids and remove its folder
#                                 (munged, shared by every cluster on the machine, keeps running)
# FERRY_TEST_SLURM_DIR picks the folder. FERRY_TEST_SLURM_ACCOUNTING=1 adds accounting (sacct): a
# MariaDB (mariadbd on a unix socket in the folder, no TCP) and slurmdbd, both in the foreground as
# root, the cluster added with sacctmgr (scripts/install-deps.sh installs slurmdbd mariadb-server
# when FERRY_TEST_SLURM_ACCOUNTING=1). Without it, sacct says accounting is disabled.
set -euo pipefail

DIR="${FERRY_TEST_SLURM_DIR:-${TMPDIR:-/tmp}/ferry-test-slurm-$(id -u)}"

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
up() { alive "$DIR/slurmctld.pid" && alive "$DIR/slurmd.pid" && [ -f "$DIR/slurm.conf" ]; }
running() {
    up || return 1
    # A cluster with accounting when asked for one, and without when not.
    if [ "${FERRY_TEST_SLURM_ACCOUNTING:-}" = 1 ]; then alive "$DIR/slurmdbd.pid" && alive "$DIR/mariadbd.pid"; else ! [ -f "$DIR/slurmdbd.conf" ]; fi
}

free_port() {
    local port
    for _ in $(seq 1 50); do
        port=$(( 20000 + RANDOM % 40000 ))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then echo "$port"; return 0; fi
    done
    return 1
}

# MariaDB and slurmdbd for accounting, on ports/sockets of their own; slurm.conf then points at them.
start_accounting() {
    for tool in slurmdbd mariadbd mariadb-install-db sacctmgr; do
        command -v "$tool" >/dev/null || [ -x "/usr/sbin/$tool" ] || { echo "$tool not found: run FERRY_TEST_SLURM_ACCOUNTING=1 scripts/install-deps.sh (slurmdbd mariadb-server)" >&2; exit 1; }
    done
    local t0=$SECONDS
    mkdir -p "$DIR/db"
    mariadb-install-db --no-defaults --user=root --datadir="$DIR/db" --auth-root-authentication-method=socket \
        --skip-test-db > "$DIR/mariadb-install.out" 2>&1 || { echo "mariadb-install-db failed; see $DIR/mariadb-install.out" >&2; tail -5 "$DIR/mariadb-install.out" >&2; exit 1; }
    setsid mariadbd --no-defaults --user=root --datadir="$DIR/db" --socket="$DIR/mysql.sock" --skip-networking \
        --pid-file="$DIR/mariadbd.pid.own" --log-error="$DIR/mariadbd.log" --innodb-buffer-pool-size=64M \
        --innodb-log-file-size=16M --skip-log-bin > "$DIR/mariadbd.out" 2>&1 < /dev/null &
    echo $! > "$DIR/mariadbd.pid"
    for _ in $(seq 1 100); do [ -S "$DIR/mysql.sock" ] && break; alive "$DIR/mariadbd.pid" || break; sleep 0.1; done
    [ -S "$DIR/mysql.sock" ] || { echo "mariadbd did not start; see $DIR/mariadbd.log" >&2; tail -5 "$DIR/mariadbd.log" >&2 2>/dev/null; exit 1; }
    local dbd_port; dbd_port=$(cat "$DIR/slurmdbd.port")
    # slurmdbd reads slurmdbd.conf beside $SLURM_CONF; it must be private to SlurmUser.
    cat > "$DIR/slurmdbd.conf" <<CONF
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=$dbd_port
SlurmUser=root
PidFile=$DIR/slurmdbd.pid.own
LogFile=$DIR/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=root
StorageLoc=slurm_acct_db
CONF
    chmod 600 "$DIR/slurmdbd.conf"
    # The MariaDB client library takes the socket from MYSQL_UNIX_PORT (host localhost: no TCP).
    MYSQL_UNIX_PORT="$DIR/mysql.sock" SLURM_CONF="$DIR/slurm.conf" setsid slurmdbd -D > "$DIR/slurmdbd.out" 2>&1 < /dev/null &
    echo $! > "$DIR/slurmdbd.pid"
    for _ in $(seq 1 150); do
        (exec 3<>"/dev/tcp/127.0.0.1/$dbd_port") 2>/dev/null && break
        alive "$DIR/slurmdbd.pid" || break
        sleep 0.1
    done
    (exec 3<>"/dev/tcp/127.0.0.1/$dbd_port") 2>/dev/null || { echo "slurmdbd did not start; see $DIR/slurmdbd.log" >&2; tail -5 "$DIR/slurmdbd.log" "$DIR/slurmdbd.out" >&2 2>/dev/null; exit 1; }
    SLURM_CONF="$DIR/slurm.conf" sacctmgr -i add cluster ferrytest > "$DIR/sacctmgr.out" 2>&1 \
        || { echo "sacctmgr add cluster failed; see $DIR/sacctmgr.out" >&2; cat "$DIR/sacctmgr.out" >&2; exit 1; }
    echo "accounting: mariadbd and slurmdbd :$dbd_port up in $((SECONDS - t0)) s"
}

start() {
    if running; then echo "test slurm already running ($DIR)"; return 0; fi
    for tool in slurmctld slurmd sbatch munged; do
        command -v "$tool" >/dev/null || [ -x "/usr/sbin/$tool" ] || { echo "$tool not found: run scripts/install-deps.sh (slurm-wlm munge)" >&2; exit 1; }
    done
    [ "$(id -u)" -eq 0 ] || { echo "the test cluster runs its daemons as root (SlurmUser=root)" >&2; exit 1; }
    stop_daemons
    rm -rf "$DIR"
    mkdir -p "$DIR/state" "$DIR/spool" "$DIR/gpu"
    # munge: the system's key (the package made it), its socket under /run/munge. One munged serves
    # every cluster on the machine, so it is started when none answers and never stopped here.
    if ! munge -n < /dev/null > /dev/null 2>&1; then
        [ -f /etc/munge/munge.key ] || { echo "/etc/munge/munge.key missing: reinstall munge" >&2; exit 1; }
        mkdir -p /run/munge /var/log/munge /var/lib/munge; chown munge: /run/munge /var/log/munge /var/lib/munge
        runuser -u munge -- /usr/sbin/munged --force
        for _ in $(seq 1 50); do munge -n < /dev/null > /dev/null 2>&1 && break; sleep 0.1; done
    fi
    mknod -m 666 "$DIR/gpu/nvidia0" c 1 3
    mknod -m 666 "$DIR/gpu/nvidia1" c 1 3
    local node ctld_port slurmd_port cpus mem
    node=$(hostname -s)
    ctld_port=$(free_port); slurmd_port=$(free_port)
    while [ "$slurmd_port" = "$ctld_port" ]; do slurmd_port=$(free_port); done
    cpus=$(nproc)
    mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 / 2 ))
    cat > "$DIR/slurm.conf" <<CONF
ClusterName=ferrytest
SlurmctldHost=$node(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/slurmctld.log
SlurmdLogFile=$DIR/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
ReturnToService=2
GresTypes=gpu
JobCompType=jobcomp/filetxt
JobCompLoc=$DIR/jobcomp.txt
MinJobAge=300
KillWait=5
SchedulerParameters=sched_interval=1,bf_interval=1
NodeName=$node NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem Gres=gpu:2 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
    if [ "${FERRY_TEST_SLURM_ACCOUNTING:-}" = 1 ]; then
        local dbd_port; dbd_port=$(free_port)
        while [ "$dbd_port" = "$ctld_port" ] || [ "$dbd_port" = "$slurmd_port" ]; do dbd_port=$(free_port); done
        echo "$dbd_port" > "$DIR/slurmdbd.port"
        cat >> "$DIR/slurm.conf" <<CONF
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$(cat "$DIR/slurmdbd.port")
JobAcctGatherType=jobacct_gather/none
CONF
        # Finished jobs leave squeue and scontrol at once (the next purge): their state must then come from sacct.
        sed -i 's/^MinJobAge=.*/MinJobAge=2/' "$DIR/slurm.conf"
        start_accounting
    fi
    echo "NodeName=$node Name=gpu File=$DIR/gpu/nvidia[0-1]" > "$DIR/gres.conf"
    export SLURM_CONF="$DIR/slurm.conf"
    setsid slurmctld -D -c -f "$SLURM_CONF" > "$DIR/slurmctld.out" 2>&1 < /dev/null &
    echo $! > "$DIR/slurmctld.pid"
    setsid slurmd -D -f "$SLURM_CONF" > "$DIR/slurmd.out" 2>&1 < /dev/null &
    echo $! > "$DIR/slurmd.pid"
    for _ in $(seq 1 100); do
        if sinfo -h -o '%T' 2>/dev/null | grep -qx idle; then
            echo "test slurm running: node $node, slurmctld :$ctld_port, slurmd :$slurmd_port ($DIR)"
            return 0
        fi
        up || break
        sleep 0.1
    done
    echo "the test cluster did not become idle; see $DIR/slurmctld.log and $DIR/slurmd.log" >&2
    tail -5 "$DIR/slurmctld.log" "$DIR/slurmd.log" "$DIR/slurmctld.out" "$DIR/slurmd.out" >&2 2>/dev/null || true
    exit 1
}

env_vars() {
    up || { echo "test slurm is not running: scripts/test-slurm.sh start" >&2; exit 1; }
    cat <<VARS
export FERRY_TEST_SLURM_CONF=$DIR/slurm.conf
export FERRY_TEST_SLURM_DIR=$DIR
export FERRY_TEST_SLURM_ACCOUNTING=$([ -f "$DIR/slurmdbd.conf" ] && echo 1 || echo 0)
VARS
}

stop_daemons() {
    local f
    for f in slurmd slurmctld slurmdbd mariadbd; do
        if alive "$DIR/$f.pid"; then
            local pid; pid=$(cat "$DIR/$f.pid")
            kill "$pid" 2>/dev/null || true
            for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            kill -9 "$pid" 2>/dev/null || true
        fi
    done
}

stop() {
    stop_daemons
    rm -rf "$DIR"
}

case "${1:-}" in
    start) start ;;
    env) env_vars ;;
    stop) stop ;;
    *) echo "usage: $0 start|env|stop" >&2; exit 2 ;;
esac
