#!/usr/bin/env bash
# Submit-to-RUNNING on the test cluster: `ferry launch --detach` against a bare `sbatch` over ssh,
# alternating, N rounds each (default 5); both clocks stop when this machine's squeue first says
# RUNNING (polled every 20 ms). Then log line latency: a job prints a timestamped line every 50 ms
# (LINES lines, default 100) while `ferry launch` follows its log; each line's latency is its
# arrival here minus its stamp (one clock: the job runs on this machine), p50/p95 on a plain host
# (the same sshd) and on the Slurm host. Needs scripts/test-slurm.sh and scripts/test-sshd.sh
# running (the sshd started after the cluster, so its sessions have SLURM_CONF) and a built ferry.
#   scripts/bench-slurm.sh [ROUNDS] [LINES]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}
lines=${2:-100}
eval "$(scripts/test-slurm.sh env)"
eval "$(scripts/test-sshd.sh env)"
export SLURM_CONF=$FERRY_TEST_SLURM_CONF
ferry=$PWD/.build/debug/ferry
[ -x "$ferry" ] || { echo "build ferry first (swift build)" >&2; exit 1; }
box=$(mktemp -d /tmp/ferry-bench-slurm-XXXX)
trap 'rm -rf "$box"' EXIT
mkdir -p "$box/home/.ferry" "$box/project" "$box/remote/.ferry/bin"
ln -s "$ferry" "$box/remote/.ferry/bin/ferry"
export FERRY_HOME=$box/home/.ferry HOME=$box/home
cd "$box/project"
echo hi > note.txt
"$ferry" hosts add cluster "$FERRY_TEST_SSH_USER@$FERRY_TEST_SSH_HOST:$FERRY_TEST_SSH_PORT" --identity "$FERRY_TEST_SSH_KEY" \
    --host-key "$FERRY_TEST_SSH_HOST_FINGERPRINT" --ferry-home "$box/remote/.ferry" --slurm > /dev/null
"$ferry" hosts add plain "$FERRY_TEST_SSH_USER@$FERRY_TEST_SSH_HOST:$FERRY_TEST_SSH_PORT" --identity "$FERRY_TEST_SSH_KEY" \
    --host-key "$FERRY_TEST_SSH_HOST_FINGERPRINT" --ferry-home "$box/remote/.ferry" > /dev/null
ssh_opts=(-i "$FERRY_TEST_SSH_KEY" -p "$FERRY_TEST_SSH_PORT" -o UserKnownHostsFile="$FERRY_TEST_SSH_KNOWN_HOSTS" -o StrictHostKeyChecking=yes -o BatchMode=yes)

now() { date +%s.%N; }
until_running() {   # Slurm job id
    while [ "$(squeue -h -j "$1" -o %T 2>/dev/null)" != RUNNING ]; do sleep 0.02; done
}
idle() { while [ -n "$(squeue -h)" ]; do sleep 0.05; done; }

# One unmeasured launch each: the agent's first install and the blob store are not what this measures.
"$ferry" launch --host cluster --detach --json -- true > /dev/null
idle
bare=() ferry_times=()
for _ in $(seq 1 "$rounds"); do
    t0=$(now)
    id=$(ssh "${ssh_opts[@]}" "$FERRY_TEST_SSH_USER@$FERRY_TEST_SSH_HOST" "sbatch --parsable --wrap 'sleep 2'")
    until_running "$id"; t1=$(now)
    bare+=("$(echo "$t1 - $t0" | bc)")
    scancel "$id"; idle

    t0=$(now)
    json=$("$ferry" launch --host cluster --detach --json -- sleep 2)
    job=$(printf '%s' "$json" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
    sid=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["scheduler_job_id"])' "$box/remote/.ferry/jobs/$job/status.json")
    until_running "$sid"; t1=$(now)
    ferry_times+=("$(echo "$t1 - $t0" | bc)")
    scancel "$sid"; idle
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
echo "bare sbatch over ssh: submit→RUNNING ${bare[*]} s (median $(median "${bare[@]}") s)"
echo "ferry launch --detach: submit→RUNNING ${ferry_times[*]} s (median $(median "${ferry_times[@]}") s)"

# Log line latency: the job stamps each line as it prints it; the reader stamps its arrival.
cat > stamp.py <<'PY'
import sys, time
for i in range(int(sys.argv[1])):
    print("stamp %.6f" % time.time(), flush=True)
    time.sleep(0.05)
PY
cat > "$box/latency.py" <<'PY'
import sys, time
lat = []
for line in sys.stdin:
    now = time.time()
    if line.startswith("stamp "):
        lat.append((now - float(line.split()[1])) * 1000)
lat.sort()
pct = lambda p: lat[min(len(lat) - 1, int(round(p / 100 * (len(lat) - 1))))]
print("%d lines, p50 %.1f ms, p95 %.1f ms, max %.1f ms" % (len(lat), pct(50), pct(95), lat[-1]) if lat else "no lines arrived")
PY
for host in plain cluster; do
    # --since-start-like: the launch follows from byte 0 on its own channel.
    result=$("$ferry" launch --host "$host" --name latency -- python3 stamp.py "$lines" 2>/dev/null | python3 "$box/latency.py")
    echo "log line latency on $host: $result"
    idle
done