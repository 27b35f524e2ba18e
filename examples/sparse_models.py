"""Two LiDAR networks in plain PyTorch on edgec.nn, with random weights:

- ``MinkUNet``: voxel 0.05 m segmentation; an encoder of strided sparse convs and residual
  submanifold blocks, a decoder of inverse convs with skip connections, per-voxel class logits.
- ``CenterPointBackbone``: CenterPoint's VoxelNet at voxel 0.075 m: Voxelize (mean VFE) → subm and
  strided sparse convs (8× down in x, y) → SparseToDense → a 2-D BEV head (heatmap + box regression).

Both take a raw scan, points [P, 4] (x, y, z, intensity), so one artifact serves every scan size.

    python examples/sparse_models.py    # both on a full synthetic scan: PyTorch, ONNX export, edgec
"""

from __future__ import annotations

import math
import os
import sys

import torch
from torch import nn

from edgec import nn as enn
from edgec.nn.functional import conv_output_extent

# MinkUNet: a 102.4 m × 102.4 m × 8 m box around the sensor
MINKUNET_RANGE = (-51.2, -51.2, -4.0, 51.2, 51.2, 4.0)
# CenterPoint (nuScenes): 108 m × 108 m, 41 voxels of 0.2 m in z
CENTERPOINT_RANGE = (-54.0, -54.0, -5.0, 54.0, 54.0, 3.2)


class BNReLU(nn.Module):
    """BatchNorm and ReLU on a sparse tensor's features."""

    def __init__(self, channels: int, relu: bool = True):
        super().__init__()
        self.bn, self.relu = nn.BatchNorm1d(channels), relu

    def forward(self, x: enn.SparseTensor) -> enn.SparseTensor:
        f = self.bn(x.feats)
        return x.replace(torch.relu(f) if self.relu else f)


class ResBlock(nn.Module):
    """Two 3×3×3 submanifold convs with a residual connection (1×1×1 projection when widths differ)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv1, self.bn1 = enn.SubMConv3d(cin, cout, 3, bias=False), BNReLU(cout)
        self.conv2, self.bn2 = enn.SubMConv3d(cout, cout, 3, bias=False), BNReLU(cout, relu=False)
        self.proj = None if cin == cout else enn.SubMConv3d(cin, cout, 1, bias=False)
        self.proj_bn = None if cin == cout else BNReLU(cout, relu=False)

    def forward(self, x: enn.SparseTensor) -> enn.SparseTensor:
        y = self.bn2(self.conv2(self.bn1(self.conv1(x))))
        skip = x if self.proj is None else self.proj_bn(self.proj(x))
        return y.replace(torch.relu(y.feats + skip.feats))


class MinkUNet(nn.Module):
    """MinkUNet-style segmentation: points [P, 4] → (logits [M, classes], voxel coords [M, 4]).

    ``enc`` is the stem's width and each encoder stage's; ``dec`` each decoder stage's (4 by default).
    """

    def __init__(self, num_classes: int = 19, enc=(32, 32, 64, 128, 256), dec=(256, 128, 96, 96),
                 voxel_size: float = 0.05, point_range=MINKUNET_RANGE, max_voxels: int = 160_000):
        super().__init__()
        stages = len(dec)  # enc holds the stem's width and one per stage
        if len(enc) != stages + 1:
            raise ValueError(f"MinkUNet needs len(enc) == len(dec) + 1, got {enc=} {dec=}")
        self.voxelize = enn.Voxelize((voxel_size,) * 3, point_range, max_voxels)
        self.stem = nn.ModuleList([enn.SubMConv3d(4, enc[0], 3, bias=False), BNReLU(enc[0]),
                                   enn.SubMConv3d(enc[0], enc[0], 3, bias=False), BNReLU(enc[0])])
        self.down, self.enc = nn.ModuleList(), nn.ModuleList()
        for i in range(stages):
            self.down.append(nn.ModuleList([enn.SparseConv3d(enc[i], enc[i], 2, stride=2, bias=False),
                                            BNReLU(enc[i])]))
            self.enc.append(ResBlock(enc[i], enc[i + 1]))
        self.up, self.dec = nn.ModuleList(), nn.ModuleList()
        width = enc[stages]
        for i in range(stages):
            self.up.append(nn.ModuleList([enn.SparseInverseConv3d(width, dec[i], 2, stride=2, bias=False),
                                          BNReLU(dec[i])]))
            self.dec.append(ResBlock(dec[i] + enc[stages - 1 - i], dec[i]))
            width = dec[i]
        self.classifier = nn.Linear(width, num_classes)

    def forward(self, points: torch.Tensor):
        x = self.voxelize(points)
        for layer in self.stem:
            x = layer(x)
        skips = []
        for (conv, bn), block in zip(self.down, self.enc):
            skips.append(x)
            x = block(bn(conv(x)))
        for (conv, bn), block, skip in zip(self.up, self.dec, reversed(skips)):
            x = bn(conv(x, skip))  # the inverse conv lands on the skip's sites, in the skip's order
            x = block(x.replace(torch.cat([x.feats, skip.feats], 1)))
        return self.classifier(x.feats), x.coords


class CenterPointBackbone(nn.Module):
    """CenterPoint VoxelNet: points [P, 4] → (heatmap [1, classes, X/8, Y/8], boxes [1, 8, X/8, Y/8])."""

    def __init__(self, num_classes: int = 10, channels=(16, 32, 64, 128), bev_channels: int = 128,
                 voxel_size=(0.075, 0.075, 0.2), point_range=CENTERPOINT_RANGE, max_voxels: int = 120_000):
        super().__init__()
        self.voxelize = enn.Voxelize(voxel_size, point_range, max_voxels)
        shape = self.voxelize.grid_shape
        c0, c1, c2, c3 = channels
        layers: list[nn.Module] = [enn.SubMConv3d(4, c0, 3, bias=False), BNReLU(c0),
                                   enn.SubMConv3d(c0, c0, 3, bias=False), BNReLU(c0)]
        for cin, cout, pad in ((c0, c1, (1, 1, 1)), (c1, c2, (1, 1, 1)), (c2, c3, (1, 1, 0))):
            layers += [enn.SparseConv3d(cin, cout, 3, stride=2, padding=pad, bias=False, spatial_shape=shape),
                       BNReLU(cout), enn.SubMConv3d(cout, cout, 3, bias=False), BNReLU(cout)]
            shape = conv_output_extent(shape, (3, 3, 3), (2, 2, 2), (1, 1, 1), pad)
        # collapse most of z before the BEV view, as CenterPoint's conv_out does
        layers += [enn.SparseConv3d(c3, c3, (1, 1, 3), stride=(1, 1, 2), bias=False, spatial_shape=shape),
                   BNReLU(c3)]
        shape = conv_output_extent(shape, (1, 1, 3), (1, 1, 2), (1, 1, 1), (0, 0, 0))
        self.sparse = nn.ModuleList(layers)
        self.to_dense = enn.SparseToDense(shape, batch_size=1)
        self.bev_shape = shape
        bev_in = c3 * shape[2]
        self.bev = nn.Sequential(
            nn.Conv2d(bev_in, bev_channels, 3, padding=1, bias=False), nn.BatchNorm2d(bev_channels), nn.ReLU(),
            nn.Conv2d(bev_channels, bev_channels, 3, padding=1, bias=False), nn.BatchNorm2d(bev_channels), nn.ReLU())
        self.heatmap = nn.Conv2d(bev_channels, num_classes, 1)
        self.boxes = nn.Conv2d(bev_channels, 8, 1)  # offset (2), height, size (3), yaw (sin, cos)

    def forward(self, points: torch.Tensor):
        x = self.voxelize(points)
        for layer in self.sparse:
            x = layer(x)
        dense = self.to_dense(x)                                  # [1, C, X, Y, Z]
        b, c, nx, ny, nz = dense.shape
        bev = self.bev(dense.permute(0, 1, 4, 2, 3).reshape(b, c * nz, nx, ny))
        return torch.sigmoid(self.heatmap(bev)), self.boxes(bev)


def randomize(model: nn.Module, seed: int = 0) -> nn.Module:
    """He-initialized weights and non-trivial BatchNorm statistics, so every layer matters; eval mode."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, enn.SparseConv3d):
                fan_in = m.in_channels * math.prod(m.kernel_size)
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * math.sqrt(2.0 / fan_in))
            elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                n = m.num_features
                m.weight.copy_(1.0 + 0.2 * torch.randn(n, generator=gen))
                m.bias.copy_(0.1 * torch.randn(n, generator=gen))
                m.running_mean.copy_(0.1 * torch.randn(n, generator=gen))
                m.running_var.copy_(1.0 + 0.5 * torch.rand(n, generator=gen))
    return model.eval()


def small_minkunet(point_range, seed=0, stages: int = 4) -> MinkUNet:
    """The same architecture, narrower (and with ``stages`` < 4, shallower), for quick tests."""
    enc, dec = (8, 8, 16, 16, 24), (16, 16, 8, 8)
    return randomize(MinkUNet(num_classes=5, enc=enc[:stages + 1], dec=dec[-stages:], point_range=point_range,
                              max_voxels=20_000), seed)


def small_centerpoint(point_range, seed=0) -> CenterPointBackbone:
    return randomize(CenterPointBackbone(num_classes=3, channels=(8, 8, 16, 16), bev_channels=16,
                                         point_range=point_range, max_voxels=20_000), seed)


def main() -> None:
    import time

    import numpy as np

    import edgec

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from lidar import synthetic_scan

    scan = synthetic_scan(seed=0)
    points = torch.from_numpy(scan)
    print(f"scan: {len(points)} points")
    for name, model in (("minkunet", randomize(MinkUNet())), ("centerpoint", randomize(CenterPointBackbone()))):
        with torch.no_grad():
            start = time.perf_counter()
            want = model(points)
            took = time.perf_counter() - start
            voxels = model.voxelize(points).feats.shape[0]
        print(f"{name}: {voxels} voxels, outputs {[tuple(o.shape) for o in want]}, {took:.2f} s in PyTorch")
        path = f"{name}.onnx"
        enn.export_onnx(model, (points,), path)
        art = edgec.compile(path, target="host", inputs={"points": (("P", 4), "float32")})
        art.run({"points": scan})  # warm-up
        start = time.perf_counter()
        got = list(art.run({"points": scan}).values())
        took = time.perf_counter() - start
        err = max(float(np.abs(g - w.numpy()).max()) for g, w in zip(got, want))
        print(f"  exported {path}; compiled with edgec: {took:.3f} s per scan, max |diff| vs PyTorch {err:.2e}")


if __name__ == "__main__":
    main()
