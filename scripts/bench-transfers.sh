#!/usr/bin/env bash
# ferry's transfers against rsync, tar|ssh and scp over the same test sshd, in one run, end to end
# from each command's start (the host's agent already installed, as after a first launch):
#   first launch of 10,000 x 10 kB files, an unchanged relaunch, one changed file, one 300 MB file,
#   a verified fetch of 100 MB (vs scp), 10,000 small files fetched (vs rsync -a).
#   scripts/bench-transfers.sh [--small N] [--big-mb N] [--fetch-mb N]
# FERRY_BENCH_FERRY picks the ferry binary (default .build/release/ferry, built here); the test sshd
# comes from FERRY_TEST_SSHD_DIR (started, and stopped afterwards, when not running). With -v each
# ferry command also prints its phases (FERRY_VERBOSE=1).
set -euo pipefail
cd "$(dirname "$0")/.."
SMALL=10000 BIG_MB=300 FETCH_MB=100 VERBOSE=""
while [ $# -gt 0 ]; do
    case "$1" in
        --small) SMALL=$2; shift 2 ;;
        --big-mb) BIG_MB=$2; shift 2 ;;
        --fetch-mb) FETCH_MB=$2; shift 2 ;;
        -v) VERBOSE=-v; shift ;;
        *) echo "usage: $0 [--small N] [--big-mb N] [--fetch-mb N] [-v]" >&2; exit 2 ;;
    esac
done
for tool in rsync scp ssh; do command -v $tool >/dev/null || { echo "bench-transfers: $tool missing (scripts/install-deps.sh)" >&2; exit 1; }; done
FERRY=${FERRY_BENCH_FERRY:-}
if [ -z "$FERRY" ]; then swift build -c release --product ferry >/dev/null; FERRY=$PWD/.build/release/ferry; fi

scripts/test-sshd.sh env >/dev/null 2>&1 || cleanup_sshd=1
scripts/test-sshd.sh start >/dev/null
eval "$(scripts/test-sshd.sh env)"
T=$(mktemp -d /tmp/ferry-bench-transfers.XXXXXX)
cleanup() {
    rm -rf "$T"
    [ -z "${cleanup_sshd:-}" ] || scripts/test-sshd.sh stop >/dev/null 2>&1 || true
}
trap cleanup EXIT
export HOME=$T/home FERRY_HOME=$T/home/.ferry
mkdir -p "$HOME" "$T/remote"
SSH="ssh -p $FERRY_TEST_SSH_PORT -i $FERRY_TEST_SSH_KEY -o IdentitiesOnly=yes -o BatchMode=yes -o UserKnownHostsFile=$FERRY_TEST_SSH_KNOWN_HOSTS -o GlobalKnownHostsFile=/dev/null -o LogLevel=ERROR"
SCP="scp -q -P $FERRY_TEST_SSH_PORT -i $FERRY_TEST_SSH_KEY -o IdentitiesOnly=yes -o BatchMode=yes -o UserKnownHostsFile=$FERRY_TEST_SSH_KNOWN_HOSTS -o GlobalKnownHostsFile=/dev/null -o LogLevel=ERROR"
U=$FERRY_TEST_SSH_USER@$FERRY_TEST_SSH_HOST

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
# A fresh remote FERRY_HOME (empty store) with the agent installed, and a host record for it.
fresh_host() {
    local name=$1
    mkdir -p "$T/remote/$name/bin"
    cp "$FERRY" "$T/remote/$name/bin/ferry"
    "$FERRY" hosts add "$name" "$U:$FERRY_TEST_SSH_PORT" --host-key "$FERRY_TEST_SSH_HOST_FINGERPRINT" \
        -i "$FERRY_TEST_SSH_KEY" --ferry-home "$T/remote/$name" >/dev/null
}
launch() {  # host workdir -> prints the job id
    local host=$1 dir=$2
    (cd "$dir" && "$FERRY" launch $VERBOSE --host "$host" --json -- true) | sed -n 's/.*"id" *: *"\([^"]*\)".*/\1/p'
}
wait_job() {  # host id
    for _ in $(seq 1 600); do
        "$FERRY" status "$2" --json 2>/dev/null | grep -q '"state" *: *"\(succeeded\|failed\)"' && return 0
        sleep 0.2
    done
    echo "job $2 did not end" >&2; return 1
}
row() { printf '| %-44s | %8s s | %-26s | %8s s | %6s× |\n' "$1" "$2" "$3" "$4" "$(ratio "$2" "$4")"; }

echo "ferry $("$FERRY" --version) ($FERRY) against OpenSSH $(ssh -V 2>&1 | cut -d, -f1), rsync $(rsync --version | head -1 | awk '{print $3}'); loopback, $(nproc) CPUs"
printf '| %-44s | %10s | %-26s | %10s | %7s |\n' case ferry reference time "ratio"
echo "| --- | --- | --- | --- | --- |"

# 1. 10,000 small files.
mkdir -p "$T/small"
python3 - "$T/small" "$SMALL" <<'PY'
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    d = os.path.join(root, "d%03d" % (i // 100))
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "f%05d.bin" % i), "wb") as f: f.write(os.urandom(10240))
PY
fresh_host small
t0=$(now); id_small=$(launch small "$T/small"); f_first=$(since "$t0")
# Where the first launch's time went, from the host's own files (works for any ferry version):
# blobs written (first..last mtime), job folder made, work/ materialised, supervisor started.
python3 - "$t0" "$T/remote/small" "$id_small" <<'PY' || true
import os, sys
t0, home, job = float(sys.argv[1]), sys.argv[2], sys.argv[3]
def m(p): return os.lstat(p).st_mtime - t0
blobs = [m(os.path.join(r, f)) for r, _, fs in os.walk(os.path.join(home, "blobs", "sha256")) for f in fs]
jd = os.path.join(home, "jobs", job)
work = [m(os.path.join(r, f)) for r, _, fs in os.walk(os.path.join(jd, "work")) for f in fs]
print("  first launch on the host's clock (s after the command started): blobs stored %.2f..%.2f, job folder %.2f, "
      "work/ files %.2f..%.2f, supervisor log %.2f" % (min(blobs), max(blobs), m(os.path.join(jd, "spec.json")), min(work), max(work),
      m(os.path.join(jd, "supervisor.log")) if os.path.exists(os.path.join(jd, "supervisor.log")) else -1))
PY
# Packaging alone: a launch to a host whose port is closed stops right after hashing.
if [ -n "${BENCH_PACKAGE:-1}" ]; then
    "$FERRY" hosts add closed "$U:1" --host-key "$FERRY_TEST_SSH_HOST_FINGERPRINT" -i "$FERRY_TEST_SSH_KEY" >/dev/null
    mkdir -p "$T/small-copy" && cp -r "$T/small/." "$T/small-copy/"
    t0=$(now); (cd "$T/small-copy" && "$FERRY" launch --host closed --json -- true >/dev/null 2>&1 || true); echo "  package (hash $SMALL new files) + a refused connect: $(since "$t0") s"
fi
t0=$(now); rsync -a -e "$SSH" "$T/small/" "$U:$T/rsync-small/"; r_first=$(since "$t0")
t0=$(now); tar -C "$T/small" -cf - . | $SSH "$U" "mkdir -p $T/tar-small && tar -C $T/tar-small -xf -"; tar_first=$(since "$t0")
row "first launch, $SMALL × 10 kB" "$f_first" "rsync -a" "$r_first"
row "  (same)" "$f_first" "tar | ssh tar x" "$tar_first"
t0=$(now); launch small "$T/small" >/dev/null; f_again=$(since "$t0")
t0=$(now); rsync -a -e "$SSH" "$T/small/" "$U:$T/rsync-small/"; r_again=$(since "$t0")
row "unchanged relaunch" "$f_again" "rsync -a" "$r_again"
head -c 10240 /dev/urandom > "$T/small/d000/f00000.bin"
t0=$(now); launch small "$T/small" >/dev/null; f_one=$(since "$t0")
t0=$(now); rsync -a -e "$SSH" "$T/small/" "$U:$T/rsync-small/"; r_one=$(since "$t0")
row "one changed file" "$f_one" "rsync -a" "$r_one"

# 2. One big file.
mkdir -p "$T/big"
head -c $((BIG_MB << 20)) /dev/urandom > "$T/big/model.bin"
fresh_host big
t0=$(now); launch big "$T/big" >/dev/null; f_big=$(since "$t0")
t0=$(now); rsync -a -e "$SSH" "$T/big/" "$U:$T/rsync-big/"; r_big=$(since "$t0")
row "first launch, one $BIG_MB MB file" "$f_big" "rsync -a" "$r_big"

# 3. Fetch: a job writes FETCH_MB MB into its output and copies the 10,000 files there.
mkdir -p "$T/fetchjob"
cat > "$T/fetchjob/make.sh" <<SH
head -c $((FETCH_MB << 20)) /dev/urandom > "\$FERRY_OUTPUT/big.bin"
mkdir -p "\$FERRY_OUTPUT/many" && cp -r "$T/small/." "\$FERRY_OUTPUT/many/"
SH
id_fetch=$( (cd "$T/fetchjob" && "$FERRY" launch --host small --json -- sh make.sh) | sed -n 's/.*"id" *: *"\([^"]*\)".*/\1/p')
wait_job small "$id_fetch"
jobdir=$T/remote/small/jobs/$id_fetch
t0=$(now); "$FERRY" fetch $VERBOSE "$id_fetch" --what big.bin --dest "$T/fetched" >/dev/null 2>"$T/fetch.err" || { cat "$T/fetch.err" >&2; exit 1; }; f_fetch=$(since "$t0")
[ -z "$VERBOSE" ] || grep -- '-v ' "$T/fetch.err" >&2
t0=$(now); $SCP "$U:$jobdir/output/big.bin" "$T/scp-big.bin"; s_fetch=$(since "$t0")
cmp -s "$T/scp-big.bin" "$T/fetched/big.bin" || { echo "fetched big.bin differs" >&2; exit 1; }
row "fetch $FETCH_MB MB (sha256-verified)" "$f_fetch" "scp" "$s_fetch"
echo "|   fetch speed against scp's: $(ratio "$s_fetch" "$f_fetch")× (goal ≥ 1.2×) | | | | |"
t0=$(now); "$FERRY" fetch $VERBOSE "$id_fetch" --what many --dest "$T/fetched" >/dev/null 2>"$T/fetch.err" || { cat "$T/fetch.err" >&2; exit 1; }; f_many=$(since "$t0")
[ -z "$VERBOSE" ] || grep -- '-v ' "$T/fetch.err" >&2
t0=$(now); rsync -a -e "$SSH" "$U:$jobdir/output/many/" "$T/rsync-many/"; r_many=$(since "$t0")
diff -r "$T/small" "$T/fetched/many" >/dev/null || { echo "fetched many/ differs" >&2; exit 1; }
row "fetch $SMALL small files" "$f_many" "rsync -a" "$r_many"
