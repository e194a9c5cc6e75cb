#!/bin/sh
# NVRTC compiles every kernel of kernels.cu to CUBIN for sm_80 and sm_90 with NVRTC 12.x and 13.x
# (pip wheels nvidia-cuda-nvrtc-cu12 and nvidia-cuda-nvrtc), no GPU needed. Wheels are cached in
# ~/.cache/ferry/wheels (FERRY_WHEEL_CACHE), outside the clone. Without a wheel (no network) the
# check is skipped with a note — except with CI=true, where a missing wheel fails the run.
set -eu
cd "$(dirname "$0")/.."
cache=${FERRY_WHEEL_CACHE:-$HOME/.cache/ferry/wheels}
mkdir -p "$cache"
status=0
for pkg in nvidia-cuda-nvrtc-cu12 nvidia-cuda-nvrtc; do
    pattern=$(echo "$pkg" | tr - _)
    wheel=$(ls "$cache"/"$pattern"-[0-9]*.whl 2>/dev/null | sort | tail -1 || true)
    if [ -z "$wheel" ]; then
        python3 -m pip download --quiet --no-deps --only-binary=:all: --platform manylinux_2_28_x86_64 \
            --platform manylinux2014_x86_64 --python-version 3.11 "$pkg" -d "$cache" >/dev/null 2>&1 || true
        wheel=$(ls "$cache"/"$pattern"-[0-9]*.whl 2>/dev/null | sort | tail -1 || true)
    fi
    if [ -z "$wheel" ]; then
        if [ "${CI:-}" = "true" ]; then echo "cuda-compile-check: $pkg wheel missing (CI=true)" >&2; status=1; continue; fi
        echo "cuda-compile-check: $pkg wheel not available here; skipped"
        continue
    fi
    unpacked="$cache/unpacked/$(basename "$wheel" .whl)"
    if [ ! -d "$unpacked" ]; then
        mkdir -p "$unpacked.tmp"
        python3 -c 'import sys, zipfile; z = zipfile.ZipFile(sys.argv[1]); [z.extract(n, sys.argv[2]) for n in z.namelist() if "/lib/libnvrtc" in n]' "$wheel" "$unpacked.tmp"
        mv "$unpacked.tmp" "$unpacked"
    fi
    lib=$(find "$unpacked" -name 'libnvrtc.so.1[0-9]' | head -1)
    python3 scripts/nvrtc_check.py "$lib" Sources/TensorCore/CUDA/kernels.cu sm_80 sm_90 || status=1
done
exit $status
