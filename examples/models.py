"""Example models in plain PyTorch, shaped like the networks edge deployments run.

Sizes are kept modest so that compiling and testing them takes seconds, not minutes.
"""

from __future__ import annotations

import os

import torch
from torch import nn
import torch.nn.functional as F


# -- MobileNetV2-style CNN ---------------------------------------------------------------------


def _conv_bn(cin, cout, k=3, stride=1, groups=1, act=True):
    layers = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    if act:
        layers.append(nn.ReLU6(inplace=True))
    return nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    def __init__(self, cin, cout, stride, expand):
        super().__init__()
        hidden = cin * expand
        self.residual = stride == 1 and cin == cout
        layers = [_conv_bn(cin, hidden, 1)] if expand != 1 else []
        layers += [_conv_bn(hidden, hidden, 3, stride, groups=hidden), _conv_bn(hidden, cout, 1, act=False)]
        self.block = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.block(x) if self.residual else self.block(x)


class MobileNetV2(nn.Module):
    """A width-reduced MobileNetV2: inverted residuals, depthwise convs, ReLU6."""

    # (expansion, channels, repeats, stride)
    CONFIG = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 2, 2), (6, 64, 2, 2), (6, 96, 1, 1)]

    def __init__(self, num_classes=100):
        super().__init__()
        layers = [_conv_bn(3, 16, 3, 2)]
        cin = 16
        for t, c, n, s in self.CONFIG:
            for i in range(n):
                layers.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
        layers.append(_conv_bn(cin, 320, 1))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(320, num_classes)

    def forward(self, x):
        x = self.features(x)
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.classifier(x)


# -- ResNet-18-style CNN -----------------------------------------------------------------------


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        identity = x if self.down is None else self.down(x)
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + identity)


class ResNet18(nn.Module):
    """ResNet-18's layout (2-2-2-2 basic blocks) at half width."""

    def __init__(self, num_classes=100, width=32):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, width, 7, 2, 3, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2, 1),
        )
        blocks, cin = [], width
        for i, cout in enumerate([width, width * 2, width * 4, width * 8]):
            stride = 1 if i == 0 else 2
            blocks += [BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)]
            cin = cout
        self.layers = nn.Sequential(*blocks)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x):
        x = self.layers(self.stem(x))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


# -- small transformer encoder -----------------------------------------------------------------


class SelfAttention(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads, self.head_dim = heads, dim // heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, s, d = x.shape
        qkv = self.qkv(x).reshape(b, s, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = torch.softmax(q @ k.transpose(-2, -1) * self.head_dim ** -0.5, dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, s, d))


class EncoderLayer(nn.Module):
    def __init__(self, dim, heads, mlp_ratio=4):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = SelfAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, dim * mlp_ratio), nn.GELU(), nn.Linear(dim * mlp_ratio, dim))

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class TinyTransformer(nn.Module):
    """Token embedding + learned positions + 2 pre-norm encoder layers + a classifier on the mean."""

    def __init__(self, vocab=1000, dim=128, heads=4, layers=2, max_len=128, num_classes=10):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.pos = nn.Parameter(torch.randn(1, max_len, dim) * 0.02)
        self.layers = nn.Sequential(*[EncoderLayer(dim, heads) for _ in range(layers)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, tokens):
        x = self.embed(tokens) + self.pos[:, : tokens.shape[1]]
        x = self.norm(self.layers(x))
        return self.head(x.mean(dim=1))


# -- registry and export -----------------------------------------------------------------------

# name -> (constructor, input name, example input shape, dtype)
EXAMPLES = {
    "mobilenet_v2": (MobileNetV2, "x", (1, 3, 96, 96), "float32"),
    "resnet18": (ResNet18, "x", (1, 3, 96, 96), "float32"),
    "transformer": (TinyTransformer, "tokens", (1, 32), "int64"),
}


def build(name: str, seed: int = 0) -> nn.Module:
    """The example model ``name`` in eval mode, with seeded weights and non-trivial BatchNorm stats."""
    ctor = EXAMPLES[name][0]
    torch.manual_seed(seed)
    model = ctor()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.1, 0.1)
    return model.eval()


def example_input(name: str, batch: int = 1, seed: int = 0):
    """A random input for ``name`` as a numpy array, with ``batch`` rows."""
    import numpy as np

    _, _, shape, dtype = EXAMPLES[name]
    rng = np.random.default_rng(seed)
    shape = (batch,) + tuple(shape[1:])
    if dtype == "int64":
        return rng.integers(0, 1000, size=shape).astype(np.int64)
    return rng.standard_normal(shape).astype(np.float32)


def export_onnx(name: str, path: str, model: nn.Module | None = None, opset: int = 17) -> str:
    """Export example ``name`` to ONNX at ``path`` with a symbolic batch dimension ``batch``."""
    import onnx

    model = model if model is not None else build(name)
    _, input_name, _, _ = EXAMPLES[name]
    x = torch.from_numpy(example_input(name))
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    torch.onnx.export(
        model, (x,), path, input_names=[input_name], output_names=["logits"],
        dynamic_axes={input_name: {0: "batch"}, "logits": {0: "batch"}},
        opset_version=opset, dynamo=False,
    )
    proto = onnx.load(path)
    proto.ir_version = 10  # onnxruntime 1.31 refuses the IR version onnx 1.23 writes by default
    onnx.save(proto, path)
    return path


def export_all(folder: str) -> dict[str, str]:
    """Export every example model to ``folder/<name>.onnx``; returns name -> path."""
    return {name: export_onnx(name, os.path.join(folder, f"{name}.onnx")) for name in EXAMPLES}
