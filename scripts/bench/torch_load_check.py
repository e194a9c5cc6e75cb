#!/usr/bin/env python3
"""Loads a ferry checkpoint into the equivalent PyTorch model and prints its Fashion-MNIST test
accuracy as JSON. Usage: torch_load_check.py mlp|cnn MODEL.safetensors"""
import gzip, json, struct, sys
import numpy as np, torch, torch.nn as nn
from safetensors.torch import load_file

kind, path = sys.argv[1], sys.argv[2]
if kind == "mlp":
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 10))
else:
    model = nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Flatten(), nn.Linear(1600, 128), nn.ReLU(), nn.Linear(128, 10))
model.load_state_dict(load_file(path))   # strict: every key and shape must match
D = "/usr/share/datasets/fashion-mnist/"
def idx(p):
    d = gzip.open(D + p).read(); nd = struct.unpack(">I", d[:4])[0] & 0xff
    dims = struct.unpack(">" + "I" * nd, d[4:4 + 4 * nd]); return np.frombuffer(d, np.uint8, offset=4 + 4 * nd).reshape(dims)
x = (torch.tensor(idx("t10k-images-idx3-ubyte.gz"), dtype=torch.float32) / 255 - 0.2860) / 0.3530
y = torch.tensor(idx("t10k-labels-idx1-ubyte.gz"), dtype=torch.int64)
model.eval()
with torch.no_grad():
    acc = (model(x.unsqueeze(1)).argmax(1) == y).float().mean().item()
print(json.dumps({"kind": kind, "torch_test_acc": acc, "torch": torch.__version__}))
