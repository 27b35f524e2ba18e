"""Gather with constant indices: negative indices resolved, and bounds checked, at import.

Stock TVM normalizes negative indices at run time from ``shape_of(data)``. When any dimension of
``data`` is symbolic (a dynamic batch), that stays in the executable as three kernels per Gather
(``shape_to_tensor``, ``take``, ``where``), even though the gathered axis is static. Exported
transformers hit this on every attention block: ``qkv[0]``, ``qkv[1]``, ``qkv[2]`` are Gathers.
With constant indices and a static axis, the indices are final at import and ``take`` reads
them as a constant; an index out of range is a model error naming the node.
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax
from tvm.ir.expr import GenericConst  # relax.Constant in TVM 0.27

from edgec.errors import ModelError
from edgec.frontend.onnx_converters import OnnxOpConverter, register

_STOCK = tvm.relax.frontend.onnx.onnx_frontend.Gather


@register("Gather")
class Gather(OnnxOpConverter):
    @classmethod
    def _impl_v1(cls, bb, inputs, attr, params):
        return cls._impl_v13(bb, inputs, attr, params)

    @classmethod
    def _impl_v11(cls, bb, inputs, attr, params):
        return cls._impl_v13(bb, inputs, attr, params)

    @classmethod
    def _impl_v13(cls, bb, inputs, attr, params):
        data, indices = inputs[0], inputs[1]
        extent = _static_extent(data, attr.get("axis", 0))
        if extent is None or not isinstance(indices, GenericConst) or isinstance(data, GenericConst):
            return _STOCK._impl_v13(bb, inputs, attr, params)
        axis = attr.get("axis", 0) % data.ty.ndim
        values = indices.value.numpy()
        if values.dtype.kind not in "iu":
            raise ModelError(f"Gather indices must be integers, not {values.dtype}")
        resolved = np.where(values < 0, values + extent, values).astype(np.int64)
        if resolved.size and (resolved.min() < 0 or resolved.max() >= extent):
            bad = values.reshape(-1)[(resolved.reshape(-1) < 0) | (resolved.reshape(-1) >= extent)][0]
            raise ModelError(f"Gather index {int(bad)} is out of range for axis {axis} of extent {extent}")
        return relax.op.take(data, relax.const(resolved, "int64"), axis)


def _static_extent(data, axis) -> int | None:
    if not isinstance(data, relax.Expr) or isinstance(data, relax.ShapeExpr):
        return None
    ty = data.ty
    ndim = getattr(ty, "ndim", -1)
    if ndim is None or ndim < 1 or getattr(ty, "shape", None) is None or not hasattr(ty.shape, "values"):
        return None
    dim = ty.shape.values[axis % ndim]
    return int(dim) if isinstance(dim, tvm.tirx.IntImm) else None
