#!/usr/bin/env python3
"""Compiles a CUDA source with one NVRTC library, for one architecture, without a GPU (NVRTC needs
none): to a CUBIN for the exact sm_XY (what ferry loads) and to PTX (what ptxas checks).

    nvrtc_check.py --nvrtc LIBNVRTC --arch sm_80 --source kernels.cu --out DIR

Writes DIR/<name>.cubin and DIR/<name>.ptx (without NVRTC's trailing NUL byte: ptxas would stop at
"Unexpected EOF") and prints one JSON line: the NVRTC version, the arch, the kernels (.entry) and
the sizes. Exits 1 with NVRTC's log when the source does not compile."""
import argparse, ctypes, json, os, re, sys

def main():
    p = argparse.ArgumentParser()
    p.add_argument("--nvrtc", required=True)
    p.add_argument("--arch", required=True)            # sm_80
    p.add_argument("--source", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--option", action="append", default=[])
    a = p.parse_args()
    lib = ctypes.CDLL(a.nvrtc)
    major, minor = ctypes.c_int(), ctypes.c_int()
    lib.nvrtcVersion(ctypes.byref(major), ctypes.byref(minor))
    lib.nvrtcGetErrorString.restype = ctypes.c_char_p
    text = open(a.source, "rb").read()
    name = os.path.splitext(os.path.basename(a.source))[0]

    def compile_for(arch):
        prog = ctypes.c_void_p()
        check(lib, lib.nvrtcCreateProgram(ctypes.byref(prog), text, a.source.encode(), 0, None, None), "nvrtcCreateProgram")
        opts = [f"--gpu-architecture={arch}", "-std=c++17"] + a.option
        arr = (ctypes.c_char_p * len(opts))(*[o.encode() for o in opts])
        status = lib.nvrtcCompileProgram(prog, len(opts), arr)
        size = ctypes.c_size_t()
        lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
        log = ctypes.create_string_buffer(size.value)
        lib.nvrtcGetProgramLog(prog, log)
        if status != 0:
            sys.stderr.write(f"NVRTC {major.value}.{minor.value} could not compile {a.source} for {arch}: "
                             f"{lib.nvrtcGetErrorString(status).decode()}\n{log.value.decode(errors='replace')}\n")
            sys.exit(1)
        return prog, log.value.decode(errors="replace").strip()

    os.makedirs(a.out, exist_ok=True)
    prog, log = compile_for(a.arch)                     # sm_XY: a CUBIN
    size = ctypes.c_size_t()
    check(lib, lib.nvrtcGetCUBINSize(prog, ctypes.byref(size)), "nvrtcGetCUBINSize")
    cubin = ctypes.create_string_buffer(size.value)
    check(lib, lib.nvrtcGetCUBIN(prog, cubin), "nvrtcGetCUBIN")
    open(os.path.join(a.out, name + ".cubin"), "wb").write(cubin.raw)
    lib.nvrtcDestroyProgram(ctypes.byref(prog))

    prog, _ = compile_for(a.arch.replace("sm_", "compute_"))   # compute_XY: PTX for ptxas
    check(lib, lib.nvrtcGetPTXSize(prog, ctypes.byref(size)), "nvrtcGetPTXSize")
    ptx = ctypes.create_string_buffer(size.value)
    check(lib, lib.nvrtcGetPTX(prog, ptx), "nvrtcGetPTX")
    lib.nvrtcDestroyProgram(ctypes.byref(prog))
    ptx_text = ptx.raw.rstrip(b"\0")
    open(os.path.join(a.out, name + ".ptx"), "wb").write(ptx_text)
    entries = re.findall(rb"\.entry\s+([A-Za-z_][A-Za-z0-9_]*)", ptx_text)
    print(json.dumps({"nvrtc": f"{major.value}.{minor.value}", "arch": a.arch, "kernels": len(entries),
                      "cubin_bytes": len(cubin.raw), "ptx_bytes": len(ptx_text), "warnings": log}))

def check(lib, status, what):
    if status != 0:
        sys.stderr.write(f"{what}: {lib.nvrtcGetErrorString(status).decode()}\n")
        sys.exit(1)

if __name__ == "__main__":
    main()
