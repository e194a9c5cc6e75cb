#!/usr/bin/env bash
# A throwaway one-node Slurm cluster on 127.0.0.1 for ferry's tests (see ../shared/SLURM.md):
# munged, slurmctld and slurmd in the foreground as root, no systemd, no cgroups, two fake GPUs
# (character devices), free ports, every state file in one folder. Installs nothing itself
# (scripts/install-deps.sh installs slurm-wlm and munge).
#   scripts/test-slurm.sh start   start it (or reuse the one running)
#   scripts/test-slurm.sh env     print the variables the tests read, as `export NAME=value` lines
#   scripts/test-slurm.sh stop    stop its slurmctld and slurmd by their pids and remove its folder
#                                 (munged, shared by every cluster on the machine, keeps running)
# FERRY_TEST_SLURM_DIR picks the folder.
set -euo pipefail

DIR="${FERRY_TEST_SLURM_DIR:-${TMPDIR:-/tmp}/ferry-test-slurm-$(id -u)}"

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
running() { alive "$DIR/slurmctld.pid" && alive "$DIR/slurmd.pid" && [ -f "$DIR/slurm.conf" ]; }

free_port() {
    local port
    for _ in $(seq 1 50); do
        port=$(( 20000 + RANDOM % 40000 ))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then echo "$port"; return 0; fi
    done
    return 1
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
        running || break
        sleep 0.1
    done
    echo "the test cluster did not become idle; see $DIR/slurmctld.log and $DIR/slurmd.log" >&2
    tail -5 "$DIR/slurmctld.log" "$DIR/slurmd.log" "$DIR/slurmctld.out" "$DIR/slurmd.out" >&2 2>/dev/null || true
    exit 1
}

env_vars() {
    running || { echo "test slurm is not running: scripts/test-slurm.sh start" >&2; exit 1; }
    cat <<VARS
export FERRY_TEST_SLURM_CONF=$DIR/slurm.conf
export FERRY_TEST_SLURM_DIR=$DIR
VARS
}

stop_daemons() {
    local f
    for f in slurmd slurmctld; do
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
