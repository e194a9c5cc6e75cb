#!/usr/bin/env bash
# Benchmarks with ratios against references measured in the same run (numpy, PyTorch when
# `import torch` works in $FERRY_BENCH_PYTHON or python3, OpenSSH for the ssh case).
#   scripts/bench.sh                   every case (sgemm elementwise mlp cnn ssh jobs) + the PyTorch load check
#   scripts/bench.sh sgemm mlp         chosen cases;  --epochs N, --threads N pass through
#   FERRY_BENCH_PYTHON=/path/to/venv/bin/python scripts/bench.sh   compare against PyTorch
#   scripts/bench.sh transfers [-v]     launch/fetch against rsync, tar|ssh and scp (scripts/bench-transfers.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = transfers ]; then shift; exec scripts/bench-transfers.sh "$@"; fi
scripts/install-deps.sh >/dev/null
swift build -c release --product Benchmarks
swift build -c release --product ferry
if [ -z "${FERRY_BENCH_PYTHON:-}" ] && [ -x .venv-bench/bin/python ]; then export FERRY_BENCH_PYTHON=$PWD/.venv-bench/bin/python; fi
PY=${FERRY_BENCH_PYTHON:-python3}

# The ssh and jobs cases need the test sshd.
if [ $# -eq 0 ] || printf '%s\n' "$@" | grep -qxE 'ssh|jobs'; then
    # Stopped afterwards only when this script started it.
    scripts/test-sshd.sh env >/dev/null 2>&1 || cleanup_sshd=1
    scripts/test-sshd.sh start >/dev/null
    eval "$(scripts/test-sshd.sh env)"
fi
tmp=""
cleanup() {
    [ -z "$tmp" ] || rm -rf "$tmp"
    [ -z "${cleanup_sshd:-}" ] || scripts/test-sshd.sh stop >/dev/null 2>&1 || true
}
trap cleanup EXIT
.build/release/Benchmarks "$@"

# Checkpoints PyTorch can load: train one epoch with ferry, load it with torch, compare accuracy.
if [ $# -eq 0 ] && "$PY" -c 'import torch, safetensors' 2>/dev/null; then
    tmp=$(mktemp -d)
    (cd "$tmp" && "$OLDPWD/.build/release/ferry" train "$OLDPWD/config/fashion_mnist_mlp.json" --epochs 1 --run-id check >/dev/null)
    ckpt=$(find "$tmp" -path '*check/checkpoints/last/model.safetensors' | head -1)
    ours=$(.build/release/ferry test -r "$(dirname "$ckpt")" --json | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["metrics"]["accuracy"])' 2>/dev/null || echo "?")
    echo "PyTorch load check: $("$PY" scripts/bench/torch_load_check.py mlp "$ckpt"); ferry test accuracy $ours"
fi
