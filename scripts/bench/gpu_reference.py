#!/usr/bin/env python3
"""The PyTorch side of scripts/gpu-check.sh, on the same GPU in the same run.

    gpu_reference.py --ferry DIR [--device cuda|cpu] [--data DIR] [--quick]

Reads DIR/ferry.json and DIR/ops/*.npy (written by ferry-gpu-check), recomputes every op case in
PyTorch from the same inputs (values and input gradients of sum(output * g)), measures PyTorch's
FP32 and TF32 sgemm and one epoch of the reference MLP and CNN on the same 10,000 images, and writes
DIR/torch.json and DIR/gpu-check.json (the comparison: op errors, GFLOP/s ratios, epoch ratios)."""
import argparse, gzip, json, os, struct, sys, time
import numpy as np, torch, torch.nn as nn, torch.nn.functional as F

OPS = {
    "add_broadcast": lambda a, b: a + b,
    "sub_scalar": lambda a: 1.5 - a,
    "mul_broadcast": lambda a, b: a * b,
    "div": lambda a, b: a / b,
    "neg": lambda a: -a,
    "pow": lambda a: a.pow(3),
    "exp": torch.exp, "log": torch.log, "sqrt": torch.sqrt, "abs": torch.abs,
    "relu": torch.relu, "sigmoid": torch.sigmoid, "tanh": torch.tanh, "gelu": F.gelu,
    "clamp": lambda a: a.clamp(-0.5, 0.7),
    "eq": lambda a, b: a.eq(b),
    "gt": lambda a, b: a > b,
    "where": lambda c, a, b: torch.where(c > 0, a, b),
    "sum": lambda a: a.sum(),
    "sum_dim_keepdim": lambda a: a.sum(1, keepdim=True),
    "mean_dim": lambda a: a.mean(0),
    "max": lambda a: a.max(),
    "max_dim": lambda a: a.max(1).values,
    "argmax_dim": lambda a: a.argmax(1),
    "min": lambda a: a.min(),
    "var_dim": lambda a: a.var(0),
    "std": lambda a: a.std(),
    "mm": torch.mm, "matmul_broadcast": torch.matmul, "bmm": torch.bmm, "mm_f64": torch.mm,
    "mm_i64": lambda a, b: torch.mm(a.cpu(), b.cpu()).to(a.device),   # CUDA has no int64 GEMM; the CPU answers
    "transpose_contiguous": lambda a: a.transpose(0, 2).contiguous() * 2,
    "permute_add": lambda a, b: a.permute(2, 0, 1) + b,
    "slice_stride": lambda a: a[0:10:3] * 3,
    "softmax": lambda a: a.softmax(1),
    "log_softmax": lambda a: a.log_softmax(1),
    "cross_entropy": F.cross_entropy, "nll_loss": F.nll_loss, "mse_loss": F.mse_loss,
    "bce_with_logits": F.binary_cross_entropy_with_logits,
    "linear": F.linear,
    "conv2d": lambda x, w, b: F.conv2d(x, w, b, stride=1, padding=1),
    "conv2d_stride2": lambda x, w: F.conv2d(x, w, None, stride=2, padding=0),
    "max_pool2d": lambda x: F.max_pool2d(x, 2),
    "avg_pool2d": lambda x: F.avg_pool2d(x, 3, stride=2, padding=1),
    "batch_norm_train": lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True, momentum=0.1, eps=1e-5),
    "layer_norm": lambda x, w, b: F.layer_norm(x, [10], w, b, eps=1e-5),
    "embedding": lambda i, w: F.embedding(i, w),
    "index_select": lambda a, i: a.index_select(0, i),
    "gather": lambda a, i: a.gather(1, i),
    "cat": lambda a, b: torch.cat([a, b], 0),
    "stack": lambda a, b: torch.stack([a, b], 1),
}

def load(path, device):
    return torch.from_numpy(np.load(path)).to(device)

def compare_ops(ferry, ops_dir, device):
    rows = []
    for case in ferry["ops"]:
        name = case["name"]
        if name not in OPS:
            rows.append({"name": name, "status": "no PyTorch case"}); continue
        inputs = []
        for i, wants in enumerate(case["grads"]):
            t = load(os.path.join(ops_dir, f"{name}.in{i}.npy"), device)
            inputs.append(t.requires_grad_(True) if wants else t)
        y = OPS[name](*inputs)
        ours = load(os.path.join(ops_dir, f"{name}.out.npy"), device)
        def err(a, b):
            if tuple(a.shape) != tuple(b.shape): return float("inf")
            if a.numel() == 0: return 0.0
            a, b = a.detach().double(), b.detach().double()
            return ((a - b).abs().max() / b.abs().max().clamp(min=1)).item()
        error = err(ours, y)
        g_path = os.path.join(ops_dir, f"{name}.g.npy")
        if os.path.exists(g_path) and any(case["grads"]):
            g = load(g_path, device)
            (y * g).sum().backward()
            for i, t in enumerate(inputs):
                gp = os.path.join(ops_dir, f"{name}.grad{i}.npy")
                if case["grads"][i] and os.path.exists(gp):
                    error = max(error, err(load(gp, device), t.grad))
        tol = 1e-9 if ours.dtype == torch.float64 else 2e-3
        rows.append({"name": name, "rel_error": error, "ok": error <= tol})
    return rows

def sgemm(device, sizes, tf32):
    torch.backends.cuda.matmul.allow_tf32 = tf32
    out = []
    for n in sizes:
        a = torch.randn(n, n, device=device); b = torch.randn(n, n, device=device)
        (a @ b).sum().item()
        reps = max(2, int(4e11 / (2 * n ** 3)))
        sync(device); t0 = time.perf_counter()
        for _ in range(reps): c = a @ b
        sync(device); s = time.perf_counter() - t0
        out.append({"n": n, "reps": reps, "gflops": 2 * n ** 3 * reps / s / 1e9})
    torch.backends.cuda.matmul.allow_tf32 = False
    return out

def sync(device):
    if device.startswith("cuda"): torch.cuda.synchronize()

def idx(path):
    with gzip.open(path) as f: data = f.read()
    nd = struct.unpack(">I", data[:4])[0] & 0xff
    dims = struct.unpack(">" + "I" * nd, data[4:4 + 4 * nd])
    return np.frombuffer(data, np.uint8, offset=4 + 4 * nd).reshape(dims)

def epochs(device, data, repeats):
    x = torch.tensor(idx(os.path.join(data, "t10k-images-idx3-ubyte.gz")), dtype=torch.float32) / 255.0
    y = torch.tensor(idx(os.path.join(data, "t10k-labels-idx1-ubyte.gz")), dtype=torch.int64)
    if repeats == 1: x, y = x[:1024], y[:1024]    # --quick: the rehearsal's 1,024 images, as ferry-gpu-check --quick
    x = ((x - 0.2860) / 0.3530).unsqueeze(1).to(device); y = y.to(device)
    result = {}
    for kind in ["mlp", "cnn"]:
        torch.manual_seed(0)
        model = (nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 10))
                 if kind == "mlp" else
                 nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
                               nn.Flatten(), nn.Linear(1600, 128), nn.ReLU(), nn.Linear(128, 10))).to(device)
        times = []
        for _ in range(repeats):
            opt = torch.optim.Adam(model.parameters(), lr=1e-3)
            perm = torch.randperm(len(x), device=device)
            sync(device); t0 = time.perf_counter()
            for i in range(0, len(x), 128):
                b = perm[i:i + 128]
                loss = F.cross_entropy(model(x[b]), y[b])
                opt.zero_grad(); loss.backward(); opt.step()
            sync(device); times.append(time.perf_counter() - t0)
        result[kind] = {"epoch_s": min(times), "epoch_s_all": times, "last_loss": loss.item()}
    return result

def main():
    p = argparse.ArgumentParser()
    p.add_argument("--ferry", required=True)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    p.add_argument("--quick", action="store_true")
    a = p.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    ferry = json.load(open(os.path.join(a.ferry, "ferry.json")))
    sizes = [g["n"] for g in ferry.get("sgemm_fp32", [])]
    torch_side = {"torch": torch.__version__, "device": a.device,
                  "gpu": torch.cuda.get_device_name(0) if a.device.startswith("cuda") else None,
                  "ops": compare_ops(ferry, os.path.join(a.ferry, "ops"), a.device),
                  "sgemm_fp32": sgemm(a.device, sizes, False),
                  "sgemm_tf32": sgemm(a.device, sizes, True) if a.device.startswith("cuda") else []}
    if os.path.exists(os.path.join(a.data, "t10k-images-idx3-ubyte.gz")):
        torch_side["epochs"] = epochs(a.device, a.data, 1 if a.quick else 3)
    json.dump(torch_side, open(os.path.join(a.ferry, "torch.json"), "w"), indent=1)

    bad = [r for r in torch_side["ops"] if not r.get("ok")]
    summary = {"device": torch_side["gpu"] or a.device, "torch": torch.__version__,
               "ops_checked": len(torch_side["ops"]), "ops_differing": [(r["name"], r.get("rel_error", r.get("status"))) for r in bad],
               "ops_ferry_cpu_mismatches": ferry.get("ops_cpu_mismatches"),
               "sgemm_ratio": [{"n": f["n"], "ferry_gflops": round(f["gflops"], 1), "torch_gflops": round(t["gflops"], 1),
                                "ratio": round(f["gflops"] / t["gflops"], 3)}
                               for f, t in zip(ferry.get("sgemm_fp32", []), torch_side["sgemm_fp32"])],
               "sgemm_tf32_ratio": [{"n": f["n"], "ferry_gflops": round(f["gflops"], 1), "torch_gflops": round(t["gflops"], 1),
                                     "ratio": round(f["gflops"] / t["gflops"], 3)}
                                    for f, t in zip(ferry.get("sgemm_tf32", []), torch_side["sgemm_tf32"])],
               "allocator": ferry.get("allocator"), "cuda_report": ferry.get("cuda_report"),
               "epoch_ratio": {k: {"ferry_s": round(ferry["epochs"][k]["epoch_s"], 3), "torch_s": round(v["epoch_s"], 3),
                                   "ratio": round(ferry["epochs"][k]["epoch_s"] / v["epoch_s"], 3)}
                               for k, v in torch_side.get("epochs", {}).items() if k in ferry.get("epochs", {})}}
    json.dump(summary, open(os.path.join(a.ferry, "gpu-check.json"), "w"), indent=1)
    print(json.dumps(summary, indent=1))
    sys.exit(1 if bad else 0)

if __name__ == "__main__":
    main()
