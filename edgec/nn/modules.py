"""Sparse layers as nn.Modules over :class:`SparseTensor` (feats [N, C], coords [N, 4] int32)."""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from edgec.nn import ops


class SparseTensor(NamedTuple):
    feats: torch.Tensor   # [N, C]
    coords: torch.Tensor  # [N, 4] int32 rows (batch, x, y, z), unique

    def replace(self, feats: torch.Tensor) -> "SparseTensor":
        """The same sites with new features (after a BatchNorm, an activation, a residual add)."""
        return SparseTensor(feats, self.coords)


def _triple(v) -> tuple[int, int, int]:
    t = tuple(int(x) for x in (v if isinstance(v, (tuple, list)) else (v, v, v)))
    if len(t) != 3:
        raise ValueError(f"expected 1 or 3 ints, got {v!r}")
    return t


class SparseConv3d(nn.Module):
    """Sparse 3-D convolution (the ``edgec`` SparseConv3d op); weight is [Kx, Ky, Kz, Cin, Cout].

    ``subm=True`` keeps the input sites (stride 1, odd kernel); otherwise the output sites are every
    q ≥ 0 that some input reaches, limited to the dense output extent when ``spatial_shape`` is given.
    """

    inverse = False

    def __init__(self, in_channels: int, out_channels: int, kernel_size=3, stride=1, padding=0, dilation=1,
                 bias: bool = True, subm: bool = False, spatial_shape=None):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride = _triple(kernel_size), _triple(stride)
        self.padding, self.dilation = _triple(padding), _triple(dilation)
        self.subm = bool(subm)
        self.spatial_shape = _triple(spatial_shape) if spatial_shape is not None else None
        if self.subm and (self.stride != (1, 1, 1) or any(k % 2 == 0 for k in self.kernel_size)):
            raise ValueError(f"subm needs stride 1 and odd kernel sizes, got {self.kernel_size=} {self.stride=}")
        self.weight = nn.Parameter(torch.empty(*self.kernel_size, in_channels, out_channels))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        fan_in = self.in_channels * math.prod(self.kernel_size)
        bound = 1.0 / math.sqrt(fan_in)
        nn.init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            nn.init.uniform_(self.bias, -bound, bound)

    def _conv(self, x: SparseTensor, out_coords) -> SparseTensor:
        feats, coords = ops.sparse_conv3d(
            x.feats, x.coords, self.weight, self.bias, out_coords, list(self.kernel_size), list(self.stride),
            list(self.dilation), list(self.padding), self.subm, self.inverse,
            list(self.spatial_shape) if self.spatial_shape is not None else None)
        return SparseTensor(feats, coords)

    def forward(self, x: SparseTensor) -> SparseTensor:
        return self._conv(x, None)

    def extra_repr(self) -> str:
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
             f"padding={self.padding}, dilation={self.dilation}")
        return s + (", subm=True" if self.subm else "") + (", bias=False" if self.bias is None else "")


class SubMConv3d(SparseConv3d):
    """Submanifold sparse conv: output sites are the input sites, in the same order."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size=3, dilation=1, bias: bool = True):
        super().__init__(in_channels, out_channels, kernel_size, 1, 0, dilation, bias, subm=True)


class SparseInverseConv3d(SparseConv3d):
    """The inverse of a strided sparse conv: produces exactly ``out_coords`` (the input sites of the
    conv it inverts), out[q] = bias + Σ feats[p]·W[a] over p·stride − padding + a·dilation = q."""

    inverse = True

    def __init__(self, in_channels: int, out_channels: int, kernel_size=3, stride=1, padding=0, dilation=1,
                 bias: bool = True):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, bias)

    def forward(self, x: SparseTensor, out_coords) -> SparseTensor:
        if isinstance(out_coords, SparseTensor):
            out_coords = out_coords.coords
        return self._conv(x, out_coords)


class SparseToDense(nn.Module):
    """Scatter a sparse tensor into a dense [B, C, X, Y, Z] grid."""

    def __init__(self, spatial_shape, batch_size: int = 1):
        super().__init__()
        self.spatial_shape, self.batch_size = _triple(spatial_shape), int(batch_size)

    def forward(self, x: SparseTensor) -> torch.Tensor:
        return ops.sparse_to_dense(x.feats, x.coords, list(self.spatial_shape), self.batch_size)

    def extra_repr(self) -> str:
        return f"spatial_shape={self.spatial_shape}, batch_size={self.batch_size}"


class Voxelize(nn.Module):
    """Points [P, 3+F] → mean-pooled voxels; points outside ``point_range`` are dropped.

    ``voxel_size`` and ``point_range`` are rounded to float32 (the precision of ONNX attributes).
    """

    def __init__(self, voxel_size, point_range, max_voxels: int):
        super().__init__()
        # float32 values, as ONNX float attributes carry them: a point on a voxel boundary then lands
        # in the same voxel here, in the exported graph, and in the compiled artifact
        self.voxel_size = tuple(float(np.float32(v)) for v in voxel_size)
        self.point_range = tuple(float(np.float32(v)) for v in point_range)
        self.max_voxels = int(max_voxels)
        if len(self.voxel_size) != 3 or len(self.point_range) != 6:
            raise ValueError(f"voxel_size needs 3 values and point_range 6, got {voxel_size!r} {point_range!r}")

    @property
    def grid_shape(self) -> tuple[int, int, int]:
        """The voxel grid's extent per axis (for SparseToDense or spatial_shape)."""
        lo, hi = self.point_range[:3], self.point_range[3:]
        return tuple(math.ceil(round((h - l) / v, 6)) for l, h, v in zip(lo, hi, self.voxel_size))

    def forward(self, points: torch.Tensor) -> SparseTensor:
        feats, coords = ops.voxelize(points, list(self.voxel_size), list(self.point_range), self.max_voxels)
        return SparseTensor(feats, coords)

    def extra_repr(self) -> str:
        return f"voxel_size={self.voxel_size}, point_range={self.point_range}, max_voxels={self.max_voxels}"
