"""The ``edgec::*`` custom ops: one graph node per sparse layer under ``torch.export`` and ONNX export.

Kernels are the plain-PyTorch functions of :mod:`edgec.nn.functional`; fake kernels give the output
sizes (data-dependent where they are: a strided conv's and Voxelize's row counts), and the backward
re-runs the differentiable plain function, so the modules train like any other.
"""

from __future__ import annotations

from typing import Optional

import torch

from edgec.nn import functional as F


def _rows(most=None):
    """A data-dependent row count. Declared >= 1: layers such as BatchNorm guard on an empty input
    while exporting, and a scan with no voxel is no input for these networks."""
    return torch.library.get_ctx().new_dynamic_size(min=1, max=most)


@torch.library.custom_op("edgec::sparse_conv3d", mutates_args=())
def sparse_conv3d(feats: torch.Tensor, coords: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor],
                  out_coords: Optional[torch.Tensor], kernel_size: list[int], stride: list[int],
                  dilation: list[int], padding: list[int], subm: bool, inverse: bool,
                  spatial_shape: Optional[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    out, out_c = F.sparse_conv3d(feats, coords, weight, bias, out_coords, kernel_size=kernel_size, stride=stride,
                                 dilation=dilation, padding=padding, subm=subm, inverse=inverse,
                                 spatial_shape=spatial_shape)
    # custom-op outputs may not alias inputs (subm and inverse hand coordinates through)
    return out, out_c.clone()


@sparse_conv3d.register_fake
def _(feats, coords, weight, bias, out_coords, kernel_size, stride, dilation, padding, subm, inverse,
      spatial_shape):
    # one row per site: under torch.export this ties the two inputs' row symbols together
    torch._check(feats.shape[0] == coords.shape[0])
    if subm:
        m = coords.shape[0]
    elif inverse:
        m = out_coords.shape[0]
    else:
        m = _rows()
    return feats.new_empty((m, weight.shape[-1])), coords.new_empty((m, 4), dtype=torch.int32)


def _conv_setup(ctx, inputs, output):
    ctx.save_for_backward(*inputs[:3], inputs[3] if inputs[3] is not None else None,
                          inputs[4] if inputs[4] is not None else None)
    ctx.attrs = inputs[5:]


def _conv_backward(ctx, grad_out, _grad_coords):
    feats, coords, weight, bias, out_coords = ctx.saved_tensors
    kernel_size, stride, dilation, padding, subm, inverse, spatial_shape = ctx.attrs
    with torch.enable_grad():
        leaves = [t.detach().requires_grad_(True) if t is not None else None for t in (feats, weight, bias)]
        out, _ = F.sparse_conv3d(leaves[0], coords, leaves[1], leaves[2], out_coords, kernel_size=kernel_size,
                                 stride=stride, dilation=dilation, padding=padding, subm=subm,
                                 inverse=inverse, spatial_shape=spatial_shape, check=False)
        wrt = [t for t in leaves if t is not None]
        grads = iter(torch.autograd.grad(out, wrt, grad_out, allow_unused=True))
    g_feats, g_weight = next(grads), next(grads)
    g_bias = next(grads) if bias is not None else None
    return g_feats, None, g_weight, g_bias, None, None, None, None, None, None, None, None


sparse_conv3d.register_autograd(_conv_backward, setup_context=_conv_setup)


@torch.library.custom_op("edgec::sparse_to_dense", mutates_args=())
def sparse_to_dense(feats: torch.Tensor, coords: torch.Tensor, spatial_shape: list[int],
                    batch_size: int) -> torch.Tensor:
    return F.sparse_to_dense(feats, coords, spatial_shape, batch_size)


@sparse_to_dense.register_fake
def _(feats, coords, spatial_shape, batch_size):
    torch._check(feats.shape[0] == coords.shape[0])
    return feats.new_empty((batch_size, feats.shape[1], *spatial_shape))


def _dense_setup(ctx, inputs, output):
    ctx.save_for_backward(inputs[1])


def _dense_backward(ctx, grad):
    (coords,) = ctx.saved_tensors
    c = coords.to(torch.int64)
    return grad[c[:, 0], :, c[:, 1], c[:, 2], c[:, 3]], None, None, None


sparse_to_dense.register_autograd(_dense_backward, setup_context=_dense_setup)


@torch.library.custom_op("edgec::voxelize", mutates_args=())
def voxelize(points: torch.Tensor, voxel_size: list[float], point_range: list[float],
             max_voxels: int) -> tuple[torch.Tensor, torch.Tensor]:
    return F.voxelize(points, voxel_size, point_range, max_voxels)


@voxelize.register_fake
def _(points, voxel_size, point_range, max_voxels):
    m = _rows(max_voxels)
    return points.new_empty((m, points.shape[1])), points.new_empty((m, 4), dtype=torch.int32)
