#!/usr/bin/env python3
"""Reference timings (seconds per call, median) for ferry's elementwise benchmark, numpy, and
PyTorch when importable. Usage: elementwise_ref.py THREADS -> one JSON object."""
import json, os, sys, time
threads = int(sys.argv[1])
import numpy as np

def median_time(fn, min_time=0.2, trials=5):
    for _ in range(3): fn()
    ts = []
    for _ in range(trials):
        reps, t0 = 0, time.perf_counter()
        while True:
            fn(); reps += 1
            dt = time.perf_counter() - t0
            if dt > min_time: break
        ts.append(dt / reps)
    ts.sort(); return ts[len(ts) // 2]

rng = np.random.default_rng(0)
a = rng.standard_normal(1 << 20).astype(np.float32); b = rng.standard_normal(1 << 20).astype(np.float32)
big = rng.standard_normal(16 << 20).astype(np.float32)
out = {"numpy": {
    "add": median_time(lambda: a + b), "mul": median_time(lambda: a * b),
    "relu": median_time(lambda: np.maximum(a, 0)), "exp": median_time(lambda: np.exp(a)),
    "sum16M": median_time(lambda: big.sum()),
}}
try:
    import torch
    torch.set_num_threads(threads)
    ta, tb, tbig = torch.from_numpy(a), torch.from_numpy(b), torch.from_numpy(big)
    out["torch"] = {"add": median_time(lambda: ta + tb), "mul": median_time(lambda: ta * tb),
                    "relu": median_time(lambda: torch.relu(ta)), "exp": median_time(lambda: torch.exp(ta)),
                    "sum16M": median_time(lambda: tbig.sum())}
    # Linear 784->256, batch 128, forward + backward
    x = torch.randn(128, 784); lin = torch.nn.Linear(784, 256)
    def step():
        y = lin(x); y.sum().backward()
    out["torch"]["linear"] = median_time(step)
except ImportError:
    pass
print(json.dumps(out))
