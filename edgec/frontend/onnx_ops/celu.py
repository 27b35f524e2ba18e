"""Celu: ``max(0, x) + min(0, alpha * (exp(x / alpha) - 1))``."""

from __future__ import annotations

from tvm import relax

from edgec.frontend.onnx_converters import OnnxOpConverter, register


@register("Celu")
class Celu(OnnxOpConverter):
    @classmethod
    def _impl_v12(cls, bb, inputs, attr, params):
        x = inputs[0]
        dtype = str(x.ty.dtype)
        alpha = relax.const(attr.get("alpha", 1.0), dtype)
        zero = relax.const(0, dtype)
        one = relax.const(1, dtype)
        negative = relax.op.multiply(alpha, relax.op.subtract(relax.op.exp(relax.op.divide(x, alpha)), one))
        return relax.op.add(relax.op.maximum(x, zero), relax.op.minimum(negative, zero))
