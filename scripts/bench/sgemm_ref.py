#!/usr/bin/env python3
"""Reference sgemm GFLOP/s for ferry's Benchmarks: numpy, and PyTorch when importable.
Usage: sgemm_ref.py THREADS N [N ...]  -> one JSON object {"numpy": {N: gflops}, "torch": {...}}"""
import json, os, sys, time
threads = int(sys.argv[1]); sizes = [int(s) for s in sys.argv[2:]]
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = str(threads)
import numpy as np

def rate(fn, n):
    for _ in range(3): fn()
    trials = []
    for _ in range(5):
        reps, t0 = 0, time.perf_counter()
        while True:
            fn(); reps += 1
            dt = time.perf_counter() - t0
            if dt > 0.2: break
        trials.append(2 * n ** 3 * reps / dt / 1e9)
    trials.sort()
    return trials[len(trials) // 2]

out = {"numpy": {}, "numpy_version": np.__version__}
for n in sizes:
    a = np.random.rand(n, n).astype(np.float32); b = np.random.rand(n, n).astype(np.float32)
    out["numpy"][n] = rate(lambda: a @ b, n)
try:
    import torch
    torch.set_num_threads(threads)
    out["torch"] = {}; out["torch_version"] = torch.__version__
    for n in sizes:
        a = torch.rand(n, n); b = torch.rand(n, n)
        out["torch"][n] = rate(lambda: a @ b, n)
except ImportError:
    pass
print(json.dumps(out))
