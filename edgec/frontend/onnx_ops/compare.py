"""Comparisons whose operand is a symbolic dimension, as in ``if x.size(1) > n`` before an If.

TVM's importer evaluates a comparison of shape values with numpy at import time, which works for
known dims and raises on a symbolic one. A symbolic operand becomes a 0-d int64 tensor here, so
the comparison runs in the model and the If gets a real condition; everything else goes to the
stock converter unchanged.
"""

from __future__ import annotations

import tvm
from tvm import relax, tirx
from tvm.relax.frontend.onnx import onnx_frontend as _stock

from edgec.frontend.onnx_converters import register


def _symbolic_scalar(value) -> bool:
    return tvm.ir.is_prim_expr(value) and not isinstance(value, (tirx.IntImm, tirx.FloatImm))


def _as_tensor(bb, value):
    if not _symbolic_scalar(value):
        return value
    vector = bb.normalize(relax.op.shape_to_tensor(relax.ShapeExpr([value])))
    return bb.normalize(relax.op.reshape(vector, []))


def _symbolic_aware(stock):
    class Converter(stock):
        @classmethod
        def _impl_v1(cls, bb, inputs, attr, params):
            if any(_symbolic_scalar(v) for v in inputs):
                x, y = (_as_tensor(bb, v) for v in inputs)
                return stock.relax_op(x, y)
            return stock.base_impl(bb, inputs, attr, params)

    Converter.__name__ = Converter.__qualname__ = stock.__name__
    return Converter


Greater = register("Greater")(_symbolic_aware(_stock.Greater))
Less = register("Less")(_symbolic_aware(_stock.Less))
GreaterOrEqual = register("GreaterOrEqual")(_symbolic_aware(_stock.GreaterOrEqual))
LessOrEqual = register("LessOrEqual")(_symbolic_aware(_stock.LessOrEqual))
