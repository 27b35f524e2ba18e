"""LpNormalization: ``x / ||x||_p`` along one axis (p = 1 or 2), zero where the norm is zero."""

from __future__ import annotations

from tvm import relax

from edgec.frontend.onnx_converters import OnnxOpConverter, register


@register("LpNormalization")
class LpNormalization(OnnxOpConverter):
    @classmethod
    def _impl_v1(cls, bb, inputs, attr, params):
        x = inputs[0]
        axis, p = attr.get("axis", -1), attr.get("p", 2)
        if p == 1:
            norm = relax.op.sum(relax.op.abs(x), axis=[axis], keepdims=True)
        elif p == 2:
            norm = relax.op.sqrt(relax.op.sum(relax.op.multiply(x, x), axis=[axis], keepdims=True))
        else:
            raise ValueError(f"LpNormalization supports p = 1 or 2, not {p}")
        norm = bb.normalize(norm)
        zero = relax.const(0, str(x.ty.dtype))
        is_zero = relax.op.equal(norm, zero)
        safe = relax.op.where(is_zero, relax.const(1, str(x.ty.dtype)), norm)
        return relax.op.where(is_zero, zero, relax.op.divide(x, safe))
