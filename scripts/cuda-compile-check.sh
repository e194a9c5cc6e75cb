#!/usr/bin/env bash
# The CUDA kernels compiled as a GPU host would compile them, on a machine without a GPU: every
# kernel of each committed .cu (default: every Sources/**/*.cu) to a CUBIN for sm_80 and sm_90 with
# NVRTC 13 and NVRTC 12 (PyTorch's pip wheels, the libraries ferry loads on hosts), and the PTX
# through `ptxas -v` (only bin/ptxas of the nvidia-cuda-nvcc wheel), which reports registers and spills.
#   scripts/cuda-compile-check.sh [FILE.cu ...]
# Wheels are cached outside the clone in $FERRY_WHEEL_CACHE (default ~/.cache/ferry/wheels); the
# CUDA tests load the same NVRTC libraries from there (the real driver's bindings, no GPU needed).
# A wheel that cannot be had skips the check with a message; with CI=true it fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE="${FERRY_WHEEL_CACHE:-$HOME/.cache/ferry/wheels}"
WHEELS=(nvidia-cuda-nvrtc==13.5.37 nvidia-cuda-nvrtc-cu12==12.9.86 nvidia-cuda-nvcc==13.5.37)
mkdir -p "$CACHE/unpacked"

fail_or_skip() {
    if [ "${CI:-}" = "true" ]; then echo "cuda-compile-check: $1" >&2; exit 1; fi
    echo "cuda-compile-check: skipped: $1" >&2; exit 0
}

if [ $# -gt 0 ]; then sources=("$@"); else mapfile -t sources < <(git ls-files 'Sources/*.cu' 'Sources/**/*.cu' | sort -u); fi
[ ${#sources[@]} -gt 0 ] || { echo "cuda-compile-check: no .cu files"; exit 0; }

for spec in "${WHEELS[@]}"; do
    name="${spec%%==*}"; version="${spec##*==}"
    stamp="$CACHE/unpacked/$name-$version.done"
    [ -f "$stamp" ] && continue
    wheel=$(ls "$CACHE"/"${name//-/_}"-"$version"-*.whl 2>/dev/null | head -1 || true)
    if [ -z "$wheel" ]; then
        python3 -m pip download -q --no-deps --only-binary=:all: -d "$CACHE" "$spec" >&2 \
            || fail_or_skip "could not download $spec (pip); NVRTC compile checks need it"
        wheel=$(ls "$CACHE"/"${name//-/_}"-"$version"-*.whl | head -1)
    fi
    if [ "$name" = nvidia-cuda-nvcc ]; then
        unzip -qo "$wheel" 'nvidia/cu13/bin/ptxas' -d "$CACHE/unpacked"    # 47 MB of the wheel's 400: ptxas alone
    else
        unzip -qo "$wheel" 'nvidia/*/lib/*' -d "$CACHE/unpacked"
    fi
    touch "$stamp"
done

NVRTC13="$CACHE/unpacked/nvidia/cu13/lib/libnvrtc.so.13"
NVRTC12="$CACHE/unpacked/nvidia/cuda_nvrtc/lib/libnvrtc.so.12"
PTXAS="$CACHE/unpacked/nvidia/cu13/bin/ptxas"
for f in "$NVRTC13" "$NVRTC12" "$PTXAS"; do [ -e "$f" ] || fail_or_skip "$f is missing from the unpacked wheels"; done

out=$(mktemp -d); trap 'rm -rf "$out"' EXIT
status=0
for src in "${sources[@]}"; do
    for lib in "$NVRTC13" "$NVRTC12"; do
        for arch in sm_80 sm_90; do
            dir="$out/$(basename "$lib")-$arch"
            if ! line=$(python3 scripts/cuda/nvrtc_check.py --nvrtc "$lib" --arch "$arch" --source "$src" --out "$dir"); then
                status=1; continue
            fi
            ptx="$dir/$(basename "${src%.cu}").ptx"
            if ! report=$("$PTXAS" -v -arch="$arch" "$ptx" -o /dev/null 2>&1); then
                echo "cuda-compile-check: ptxas refused the PTX of $src from $(basename "$lib") for $arch:" >&2
                echo "$report" >&2; status=1; continue
            fi
            registers=$(grep -o 'Used [0-9]* registers' <<<"$report" | awk '{print $2}' | sort -n | tail -1)
            spills=$(grep -o '[0-9]* bytes spill stores' <<<"$report" | awk '{s += $1} END {print s + 0}')
            spilling=$(grep -B2 -E '[1-9][0-9]* bytes spill stores' <<<"$report" | grep -o "for '[^']*'" | sort -u | tr '\n' ' ' || true)
            echo "cuda-compile-check: $src $line max_registers=${registers:-0} spill_store_bytes=$spills ${spilling:+spilling: $spilling}"
        done
    done
done
exit $status
