#!/usr/bin/env python3
"""Compiles Sources/TensorCore/CUDA/kernels.cu to CUBIN with one libnvrtc for each given arch,
with the options ferry's CUDA driver uses (SystemCUDADriver.swift). Prints the kernels' sizes.
Usage: nvrtc_check.py LIBNVRTC_SO KERNELS_CU sm_80 sm_90 ..."""
import ctypes, sys

lib_path, source_path, archs = sys.argv[1], sys.argv[2], sys.argv[3:]
nvrtc = ctypes.CDLL(lib_path)
major, minor = ctypes.c_int(), ctypes.c_int()
nvrtc.nvrtcVersion(ctypes.byref(major), ctypes.byref(minor))
source = open(source_path, "rb").read()
failed = False
for arch in archs:
    prog = ctypes.c_void_p()
    assert nvrtc.nvrtcCreateProgram(ctypes.byref(prog), source, b"kernels.cu", 0, None, None) == 0
    opts = [f"--gpu-architecture={arch}".encode(), b"-default-device", b"--std=c++17"]
    arr = (ctypes.c_char_p * len(opts))(*opts)
    status = nvrtc.nvrtcCompileProgram(prog, len(opts), arr)
    size = ctypes.c_size_t()
    nvrtc.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
    log = ctypes.create_string_buffer(size.value)
    nvrtc.nvrtcGetProgramLog(prog, log)
    text = log.value.decode(errors="replace").strip()
    if status != 0:
        print(f"NVRTC {major.value}.{minor.value} {arch}: FAILED\n{text}")
        failed = True
    else:
        nvrtc.nvrtcGetCUBINSize(prog, ctypes.byref(size))
        print(f"NVRTC {major.value}.{minor.value} {arch}: ok, CUBIN {size.value} bytes" + (f"\n{text}" if text else ""))
    nvrtc.nvrtcDestroyProgram(ctypes.byref(prog))
sys.exit(1 if failed else 0)
