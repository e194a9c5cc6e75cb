#!/usr/bin/env bash
# The CUDA backend on a real GPU against PyTorch on the same GPU (the CUDA issue's device check).
#
#   scripts/gpu-check.sh build    here: a static release build of ferry-gpu-check (no Swift on the GPU
#                                 machine), compressed, with the 10,000 Fashion-MNIST test images, into
#                                 .gpu-check/ (ignored by git; the device tool carries it)
#   scripts/gpu-check.sh run      there (the lent GPU machine, PyTorch in /opt/torch/.venv): device
#                                 query, every op case against PyTorch, sgemm FP32/TF32, one epoch of the
#                                 reference MLP and CNN, allocator statistics → $OUT/gpu-check.json
#   scripts/gpu-check.sh local    here, as a rehearsal: the same run on FERRY_CUDA_DRIVER=mock (the CPU
#                                 stand-in driver) or --device cpu, against PyTorch on the CPU
#
# The device call (one prepared call, timeout 300 s):
#   run(command: "bash scripts/gpu-check.sh run", carry: [".gpu-check"], timeout_s: 300)
set -euo pipefail
cd "$(dirname "$0")/.."
BUNDLE=.gpu-check
mode="${1:-}"

case "$mode" in
build)
    start=$(date +%s)
    swift build -c release --static-swift-stdlib --product ferry-gpu-check
    rm -rf "$BUNDLE"; mkdir -p "$BUNDLE/data"
    bin="$(swift build -c release --show-bin-path)/ferry-gpu-check"
    strip -o "$BUNDLE/ferry-gpu-check" "$bin"
    xz -T0 -6 -f "$BUNDLE/ferry-gpu-check"
    data="${FERRY_FASHION_MNIST:-/usr/share/datasets/fashion-mnist}"
    cp "$data/t10k-images-idx3-ubyte.gz" "$data/t10k-labels-idx1-ubyte.gz" "$BUNDLE/data/"
    du -sh "$BUNDLE"
    size=$(du -sb "$BUNDLE" | cut -f1)
    [ "$size" -lt $((60 << 20)) ] || { echo "gpu-check: $BUNDLE is $size bytes, over what the device tool carries (64 MiB)" >&2; exit 1; }
    echo "gpu-check: built in $(( $(date +%s) - start ))s; carry $BUNDLE and run: bash scripts/gpu-check.sh run"
    ;;
run|local)
    [ -f "$BUNDLE/ferry-gpu-check.xz" ] || { echo "gpu-check: no $BUNDLE/ferry-gpu-check.xz: run scripts/gpu-check.sh build first (and carry $BUNDLE)" >&2; exit 1; }
    xz -dkf "$BUNDLE/ferry-gpu-check.xz"; chmod +x "$BUNDLE/ferry-gpu-check"
    out="${OUT:-$BUNDLE/out}"; mkdir -p "$out"
    work=$(mktemp -d)
    if [ "$mode" = run ]; then
        # PyTorch's venv first on PATH: ferry finds the cu13 cuBLAS and NVRTC wheels under its site-packages.
        export PATH="/opt/torch/.venv/bin:$PATH"
        python=/opt/torch/.venv/bin/python
        device=cuda:0; torch_device=cuda
        nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/nvidia-smi.txt" || true
    else
        python="${FERRY_BENCH_PYTHON:-.venv-bench/bin/python}"
        device="${GPU_CHECK_DEVICE:-cuda:0}"; torch_device=cpu
        [ "$device" = cpu ] || export FERRY_CUDA_DRIVER="${FERRY_CUDA_DRIVER:-mock}"
    fi
    quick=(); [ "$mode" = local ] && quick=(--quick)
    set +e
    timeout 200 "$BUNDLE/ferry-gpu-check" --out "$work" --device "$device" --data "$BUNDLE/data" "${quick[@]}" 2>&1 | tee "$out/ferry.log"
    ferry_status=${PIPESTATUS[0]}
    timeout 150 "$python" scripts/bench/gpu_reference.py --ferry "$work" --device "$torch_device" --data "$BUNDLE/data" "${quick[@]}" \
        > "$out/torch.log" 2>&1
    torch_status=$?
    set -e
    cp "$work/ferry.json" "$out/" 2>/dev/null || true
    cp "$work/torch.json" "$work/gpu-check.json" "$out/" 2>/dev/null || true
    tail -c 6000 "$out/torch.log"
    echo "gpu-check: ferry-gpu-check exit $ferry_status, reference exit $torch_status; results in $out"
    rm -rf "$work"
    [ "$ferry_status" -eq 0 ] && [ "$torch_status" -eq 0 ]
    ;;
*)
    sed -n '2,16p' "$0"; exit 2 ;;
esac
