"""Clip as Relax ``maximum``/``minimum`` rather than TVM's opaque ``call_tir``.

Stock TVM lowers Clip to TIR at import, where no graph pass can see it: layout planning then
wraps every ReLU6 of a MobileNet in a transpose pair. As Relax elementwise ops with bounds of
the input's rank, Clip follows whatever layout its producer has. NaN bounds mean "unbounded".
"""

from __future__ import annotations

import numpy as np
from tvm import relax
from tvm.ir.expr import GenericConst  # relax.Constant in TVM 0.27

from edgec.frontend.onnx_converters import OnnxOpConverter, register


def _bound(bb, x, bound, *, lower: bool):
    dtype = str(x.ty.dtype)
    ndim = x.ty.ndim
    if isinstance(bound, (int, float)) or isinstance(bound, GenericConst):
        value = float(bound) if isinstance(bound, (int, float)) else float(bound.value.numpy().reshape(-1)[0])
        if np.isnan(value):
            return None
        if ndim < 0:
            return relax.const(value, dtype)
        return relax.const(np.full([1] * ndim, value, dtype=dtype))
    if "float" in dtype:
        unbounded = relax.const(-np.inf if lower else np.inf, dtype)
        bound = bb.emit(relax.op.where(relax.op.isnan(bound), unbounded, bound))
    return bound


def _clip(bb, x, lo, hi):
    out = x
    if lo is not None:
        lo = _bound(bb, x, lo, lower=True)
        if lo is not None:
            out = bb.emit(relax.op.maximum(out, lo))
    if hi is not None:
        hi = _bound(bb, x, hi, lower=False)
        if hi is not None:
            out = bb.emit(relax.op.minimum(out, hi))
    return out


@register("Clip")
class Clip(OnnxOpConverter):
    @classmethod
    def _impl_v1(cls, bb, inputs, attr, params):
        lo, hi = attr.get("min"), attr.get("max")
        return _clip(bb, inputs[0], lo, hi)

    @classmethod
    def _impl_v11(cls, bb, inputs, attr, params):
        lo = inputs[1] if len(inputs) > 1 else None
        hi = inputs[2] if len(inputs) > 2 else None
        return _clip(bb, inputs[0], lo, hi)
