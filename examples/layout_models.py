"""Models that exercise layout planning, exported to ONNX the way real exporters write them.

- ``cnn``: a small ResNet-style NCHW network (convs, batch norm, residual adds, pooling).
- ``transformer``: a PyTorch encoder whose attention reshapes to heads and ``Transpose``s around
  every attention block, as ``torch.onnx.export`` writes it.
- ``nhwc``: a TF-style graph that takes NHWC images and transposes to NCHW at the input, as
  tf2onnx emits for Keras models.

Run ``python examples/layout_models.py OUT_DIR`` to write the three ``.onnx`` files.
"""

from __future__ import annotations

import os
import sys

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

MODELS = ("cnn", "transformer", "nhwc")


class _Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.skip = nn.Conv2d(cin, cout, 1, stride, bias=False) if stride != 1 or cin != cout else nn.Identity()

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(y)) + self.skip(x))


class CNN(nn.Module):
    def __init__(self, classes=10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 32, 3, 1, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU())
        self.blocks = nn.Sequential(_Block(32, 32, 1), _Block(32, 64, 2), _Block(64, 128, 2))
        self.head = nn.Linear(128, classes)

    def forward(self, x):
        x = self.blocks(self.stem(x))
        return self.head(F.adaptive_avg_pool2d(x, 1).flatten(1))


class _Attention(nn.Module):
    """Multi-head attention written out, so the export carries the head Transposes."""

    def __init__(self, dim, heads):
        super().__init__()
        self.heads, self.dh = heads, dim // heads
        self.q, self.k, self.v, self.o = (nn.Linear(dim, dim) for _ in range(4))

    def forward(self, x):
        b, s, d = x.shape

        def split(t):
            return t.reshape(b, s, self.heads, self.dh).transpose(1, 2)

        q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
        att = torch.softmax(q @ k.transpose(-2, -1) / self.dh ** 0.5, dim=-1)
        return self.o((att @ v).transpose(1, 2).reshape(b, s, d))


class Encoder(nn.Module):
    def __init__(self, dim=128, heads=4, layers=2, ff=256):
        super().__init__()
        self.attn = nn.ModuleList(_Attention(dim, heads) for _ in range(layers))
        self.ln1 = nn.ModuleList(nn.LayerNorm(dim) for _ in range(layers))
        self.ff = nn.ModuleList(nn.Sequential(nn.Linear(dim, ff), nn.GELU(), nn.Linear(ff, dim)) for _ in range(layers))
        self.ln2 = nn.ModuleList(nn.LayerNorm(dim) for _ in range(layers))

    def forward(self, x):
        for attn, ln1, ff, ln2 in zip(self.attn, self.ln1, self.ff, self.ln2):
            x = ln1(x + attn(x))
            x = ln2(x + ff(x))
        return x


class NHWCNet(nn.Module):
    """Takes NHWC like a Keras model; the Transpose at the input is what tf2onnx writes."""

    def __init__(self, classes=10):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 32, 3, 2, 1), nn.ReLU(), nn.Conv2d(32, 32, 3, 1, 1, groups=32), nn.ReLU(),
            nn.Conv2d(32, 64, 1), nn.ReLU(), nn.Conv2d(64, 64, 3, 2, 1), nn.ReLU())
        self.head = nn.Linear(64, classes)

    def forward(self, x):
        x = self.body(x.permute(0, 3, 1, 2))
        return self.head(x.mean(dim=(2, 3)))


def build(name: str, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = {"cnn": CNN, "transformer": Encoder, "nhwc": NHWCNet}[name]()
    for m in model.modules():  # non-trivial batch-norm statistics so folding is exercised
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 1.5)
    return model.eval()


def example_input(name: str, seed: int = 0) -> np.ndarray:
    shape = {"cnn": (1, 3, 56, 56), "transformer": (1, 64, 128), "nhwc": (1, 64, 64, 3)}[name]
    return np.random.default_rng(seed).standard_normal(shape).astype("float32")


def export(name: str, path: str) -> str:
    """Export ``name`` to ONNX at ``path`` (opset 17, IR version 10)."""
    import onnx

    x = torch.from_numpy(example_input(name))
    torch.onnx.export(build(name), (x,), path, input_names=["x"], output_names=["y"],
                      dynamo=False, opset_version=17)
    model = onnx.load(path)
    model.ir_version = 10
    onnx.save(model, path)
    return path


def export_all(folder: str) -> dict[str, str]:
    os.makedirs(folder, exist_ok=True)
    return {name: export(name, os.path.join(folder, f"{name}.onnx")) for name in MODELS}


if __name__ == "__main__":
    for name, path in export_all(sys.argv[1] if len(sys.argv) > 1 else "layout_models").items():
        print(name, path)
