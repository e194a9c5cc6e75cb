#!/usr/bin/env bash
# Benchmarks with ratios against references measured in the same run (numpy, PyTorch when
# `import torch` works in $FERRY_BENCH_PYTHON or python3). Arguments name cases (default: all).
#   FERRY_BENCH_PYTHON=/path/to/venv/bin/python scripts/bench.sh sgemm
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh >/dev/null
swift build -c release --product Benchmarks
if [ -z "${FERRY_BENCH_PYTHON:-}" ] && [ -x .venv-bench/bin/python ]; then export FERRY_BENCH_PYTHON=$PWD/.venv-bench/bin/python; fi
.build/release/Benchmarks "$@"
