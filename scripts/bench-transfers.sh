#!/usr/bin/env bash
# ferry's transfers against rsync, tar|ssh and scp over the same test sshd, in one run, end to end
# from each command's start (the host's agent already installed, as after a first launch):
#   first launch of 10,000 x 10 kB files, an unchanged relaunch, one changed file, one 300 MB file,
#   a verified fetch of 100 MB (vs scp), 10,000 small files fetched (vs rsync -a).
#   scripts/bench-transfers.sh [--small N] [--big-mb N] [--fetch-mb N] [--repeat N] [-v]
# Each case runs --repeat times (default 3), ferry and its reference one after the other, each
# round on fresh hosts, each timed command after a `sync`; the table gives medians and each ratio is the median of the rounds' ratios.
# The first launch's phases (ferry -v) are printed as a table of medians too. After each ferry
# launch the script waits until the host has made its spare work/ (see settle) before the next step.
# FERRY_BENCH_FERRY picks the ferry binary (default .build/release/ferry, built here); the test sshd
# comes from FERRY_TEST_SSHD_DIR (started, and stopped afterwards, when not running). With -v each
# ferry command also prints its phases (FERRY_VERBOSE=1).
set -euo pipefail
cd "$(dirname "$0")/.."
SMALL=10000 BIG_MB=300 FETCH_MB=100 VERBOSE="" REPEAT=3
while [ $# -gt 0 ]; do
    case "$1" in
        --small) SMALL=$2; shift 2 ;;
        --big-mb) BIG_MB=$2; shift 2 ;;
        --fetch-mb) FETCH_MB=$2; shift 2 ;;
        --repeat) REPEAT=$2; shift 2 ;;
        -v) VERBOSE=-v; shift ;;
        *) echo "usage: $0 [--small N] [--big-mb N] [--fetch-mb N] [--repeat N] [-v]" >&2; exit 2 ;;
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
launch() {  # host workdir [phase-file] -> prints the job id (ferry -v's phase lines go to the phase file)
    local host=$1 dir=$2 phases=${3:-/dev/null}
    (cd "$dir" && FERRY_VERBOSE=1 "$FERRY" launch -v --host "$host" --json -- true 2>"$phases") | sed -n 's/.*"id" *: *"\([^"]*\)".*/\1/p'
}
wait_job() {  # host id
    for _ in $(seq 1 600); do
        "$FERRY" status "$2" --json 2>/dev/null | grep -q '"state" *: *"\(succeeded\|failed\)"' && return 0
        sleep 0.2
    done
    echo "job $2 did not end" >&2; return 1
}
# A job of many files leaves its host copying that tree for the next launch (`ferry agent
# prepare-work`, a spare work/): wait until the host is done, so that the reference's time is
# not taken beside it, and the next launch finds what a launch minutes later would. Prints the wait.
# Then write back what is dirty (sync), so that neither side's time includes the other's writeback.
settle() {  # host
    local t0; t0=$(now)
    for _ in $(seq 1 600); do
        ls -d "$T/remote/$1/spares/".new-* >/dev/null 2>&1 || { since "$t0"; sync; return 0; }
        sleep 0.05
    done
    echo "host $1 still preparing work after 30 s" >&2; return 1
}
# Nothing is deleted until the end (about 3 GB a round): on this machine's root file system (ext4)
# creating a file passes over every inode freed in the last 30 s (ext4's recently_deleted, seen
# with perf), so after a round's 60,000 files were deleted, creates took seconds more, and most
# for whichever tool came first.
# Results: one line "CASE FERRY REFERENCE" per round in $T/results.
record() { echo "$1 $2 $3" >> "$T/results"; }
# A launch's phases from its -v lines ("  -v package: ... in 0.30 s"), as "phase:CASE:NAME SECONDS 0" lines.
phases() {
    sed -n 's/^ *-v \([a-z/ ]*\): .* in \([0-9.]*\) s$/\1 \2/p' "$2" |
        awk -v c="$1" '{ n = $NF; $NF = ""; sub(/ $/, ""); gsub(/ /, "_"); print "phase:" c ":" $0, n, 0 }' >> "$T/results"
}


echo "ferry $("$FERRY" --version) ($FERRY) against OpenSSH $(ssh -V 2>&1 | cut -d, -f1), rsync $(rsync --version | head -1 | awk '{print $3}'); loopback, $(nproc) CPUs; $REPEAT rounds, medians"

# The workdirs, made once.
mkdir -p "$T/small"
python3 - "$T/small" "$SMALL" <<'PY'
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    d = os.path.join(root, "d%03d" % (i // 100))
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "f%05d.bin" % i), "wb") as f: f.write(os.urandom(10240))
PY
mkdir -p "$T/big"
head -c $((BIG_MB << 20)) /dev/urandom > "$T/big/model.bin"
: > "$T/results"

for round in $(seq 1 "$REPEAT"); do
    R=$T/r$round
    mkdir -p "$R"
    # 1. 10,000 small files: a fresh host and a fresh local hash cache, so the first launch hashes all.
    cp -r "$T/small" "$R/small"
    fresh_host "small$round"
    sync; t0=$(now); id_small=$(launch "small$round" "$R/small" "$R/phases"); f_first=$(since "$t0")
    s_first=$(settle "small$round")
    sync; t0=$(now); rsync -a -e "$SSH" "$R/small/" "$U:$R/rsync-small/"; r_first=$(since "$t0")
    sync; t0=$(now); tar -C "$R/small" -cf - . | $SSH "$U" "mkdir -p $R/tar-small && tar -C $R/tar-small -xf -"; tar_first=$(since "$t0")
    record first "$f_first" "$r_first"
    record first-tar "$f_first" "$tar_first"
    phases first "$R/phases"
    sync; t0=$(now); launch "small$round" "$R/small" "$R/phases-again" >/dev/null; f_again=$(since "$t0")
    s_again=$(settle "small$round")
    phases again "$R/phases-again"
    t0=$(now); rsync -a -e "$SSH" "$R/small/" "$U:$R/rsync-small/"; r_again=$(since "$t0")
    record again "$f_again" "$r_again"
    head -c 10240 /dev/urandom > "$R/small/d000/f00000.bin"
    sync; t0=$(now); launch "small$round" "$R/small" >/dev/null; f_one=$(since "$t0")
    settle "small$round" >/dev/null
    t0=$(now); rsync -a -e "$SSH" "$R/small/" "$U:$R/rsync-small/"; r_one=$(since "$t0")
    record one "$f_one" "$r_one"

    # 2. One big file.
    cp -r "$T/big" "$R/big"
    fresh_host "big$round"
    sync; t0=$(now); launch "big$round" "$R/big" >/dev/null; f_big=$(since "$t0")
    sync
    t0=$(now); rsync -a -e "$SSH" "$R/big/" "$U:$R/rsync-big/"; r_big=$(since "$t0")
    record big "$f_big" "$r_big"

    # 3. Fetch: a job writes FETCH_MB MB into its output and copies the 10,000 files there.
    mkdir -p "$R/fetchjob"
    cat > "$R/fetchjob/make.sh" <<SH
head -c $((FETCH_MB << 20)) /dev/urandom > "\$FERRY_OUTPUT/big.bin"
mkdir -p "\$FERRY_OUTPUT/many" && cp -r "$T/small/." "\$FERRY_OUTPUT/many/"
SH
    id_fetch=$( (cd "$R/fetchjob" && "$FERRY" launch --host "small$round" --json -- sh make.sh) | sed -n 's/.*"id" *: *"\([^"]*\)".*/\1/p')
    wait_job "small$round" "$id_fetch"
    jobdir=$T/remote/small$round/jobs/$id_fetch
    sync; t0=$(now); "$FERRY" fetch $VERBOSE "$id_fetch" --what big.bin --dest "$R/fetched" >/dev/null 2>"$R/fetch.err" || { cat "$R/fetch.err" >&2; exit 1; }; f_fetch=$(since "$t0")
    [ -z "$VERBOSE" ] || grep -- '-v ' "$R/fetch.err" >&2
    sync; t0=$(now); $SCP "$U:$jobdir/output/big.bin" "$R/scp-big.bin"; s_fetch=$(since "$t0")
    cmp -s "$R/scp-big.bin" "$R/fetched/big.bin" || { echo "fetched big.bin differs" >&2; exit 1; }
    record fetch "$f_fetch" "$s_fetch"
    sync; t0=$(now); "$FERRY" fetch $VERBOSE "$id_fetch" --what many --dest "$R/fetched" >/dev/null 2>"$R/fetch.err" || { cat "$R/fetch.err" >&2; exit 1; }; f_many=$(since "$t0")
    [ -z "$VERBOSE" ] || grep -- '-v ' "$R/fetch.err" >&2
    sync; t0=$(now); rsync -a -e "$SSH" "$U:$jobdir/output/many/" "$R/rsync-many/"; r_many=$(since "$t0")
    diff -r "$T/small" "$R/fetched/many" >/dev/null || { echo "fetched many/ differs" >&2; exit 1; }
    record many "$f_many" "$r_many"
    echo "  round $round: the host prepared the next work/ in $s_first s after the first launch, $s_again s after the relaunch" >&2
    echo "  round $round: first $f_first/$r_first, again $f_again/$r_again, one $f_one/$r_one, big $f_big/$r_big, fetch $f_fetch/$s_fetch, many $f_many/$r_many (ferry/reference s)" >&2
done

python3 - "$T/results" "$SMALL" "$BIG_MB" "$FETCH_MB" "$REPEAT" <<'PY'
import sys, statistics
path, small, big, fetch, n = sys.argv[1:6]
rows = {}
for line in open(path):
    case, f, r = line.split()
    rows.setdefault(case, []).append((float(f), float(r)))
med = statistics.median
cases = [("first", f"first launch, {small} × 10 kB", "rsync -a", "≤ 1.0×"),
         ("first-tar", "  (same)", "tar \\| ssh tar x", ""),
         ("again", "unchanged relaunch", "rsync -a", "≤ 1.0×"),
         ("one", "one changed file", "rsync -a", "≤ 1.0×"),
         ("big", f"first launch, one {big} MB file", "rsync -a", "≤ 1.0×"),
         ("fetch", f"fetch {fetch} MB (sha256-verified), time", "scp", ""),
         ("many", f"fetch {small} small files", "rsync -a", "≤ 1.0×")]
print("| case | ferry | reference | time | ratio (median of %s) | goal |" % n)
print("| --- | --- | --- | --- | --- | --- |")
for key, name, ref, goal in cases:
    if key not in rows: continue
    v = rows[key]
    ratios = [f / r for f, r in v]
    print(f"| {name} | {med([f for f, _ in v]):.2f} s | {ref} | {med([r for _, r in v]):.2f} s | {med(ratios):.2f}× ({min(ratios):.2f}–{max(ratios):.2f}) | {goal} |")
    if key == "fetch":
        speed = [r / f for f, r in v]
        print(f"| fetch speed against scp's | | | | {med(speed):.2f}× ({min(speed):.2f}–{max(speed):.2f}) | ≥ 1.2× |")
for case, title in (("first", "first launch"), ("again", "unchanged relaunch")):
    phases = [(k.split(":", 2)[2].replace("_", " "), [f for f, _ in v]) for k, v in rows.items() if k.startswith("phase:" + case + ":")]
    if phases:
        print(f"{title}'s phases (ferry -v, median of {n}): " + ", ".join(f"{k} {med(v):.2f} s" for k, v in phases))
PY
