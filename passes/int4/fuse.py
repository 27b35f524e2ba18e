"""FuseInt4Dequant: ``matmul(x, int4_dequant(W))`` becomes the fused int4 matmul operator.

The weight a blocked DequantizeLinear produces is ``[K, N]`` (blocks along K, axis 0): exactly
the operator's transposed weight. Other consumers keep the materializing ``int4_dequant``.
"""

from __future__ import annotations

import tvm
from tvm import relax
from tvm.relax.expr_functor import PyExprMutator, mutator

from edgec.passes.int4.dequant import GROUP_ATTR, TRANSPOSE_ATTR, weight_of
from edgec.passes.int4.op import emit_int4_matmul


@tvm.transform.module_pass(opt_level=0, name="FuseInt4Dequant")
class FuseInt4Dequant:
    def __init__(self, target):
        self.target = target

    def transform_module(self, mod, _ctx):
        rewriter = _Rewriter(mod, self.target)
        for gv, func in mod.functions_items():
            if isinstance(func, relax.Function):
                rewriter.builder_.update_func(gv, rewriter.visit_expr(func))
        return relax.transform.DeadCodeElimination()(rewriter.builder_.get())


@mutator
class _Rewriter(PyExprMutator):
    def __init__(self, mod, target):
        super().__init__(mod)
        self.mod, self.target = mod, target

    def _dequant_of(self, expr):
        if isinstance(expr, relax.Var):
            expr = self.lookup_binding(expr)
        if not (isinstance(expr, relax.Call) and expr.op.same_as(tvm.ir.Op.get("relax.call_tir"))):
            return None
        func = self.mod[expr.args[0]] if expr.args[0] in self.mod.get_global_vars() else None
        if func is None or func.attrs is None or GROUP_ATTR not in func.attrs:
            return None
        if not int(func.attrs[TRANSPOSE_ATTR]):
            return None
        return weight_of(expr.args[1].fields, int(func.attrs[GROUP_ATTR]))

    def visit_call_(self, call):
        call = super().visit_call_(call)
        if not call.op.same_as(tvm.ir.Op.get("relax.matmul")):
            return call
        qw = self._dequant_of(call.args[1])
        if qw is None or str(call.args[0].ty.dtype) != str(call.args[1].ty.dtype):
            return call
        return emit_int4_matmul(self.builder_, call.args[0], qw, None, self.target, where="DequantizeLinear+MatMul")
