"""FuseSparseEpilogue: fold what follows a sparse conv into it, where the graph allows.

After a sparse conv's ``call_tir``, a chain of single-use consumers is absorbed:

1. per-channel affine ops with constants (``add``/``subtract``/``multiply``/``divide`` by a
   [Cout]-broadcastable constant — inference BatchNorm after DecomposeOpsForInference and
   FoldConstant) fold into the conv's constant weight and bias;
2. one ``add`` of a non-constant tensor of the output's shape (a residual) becomes an input the
   kernel adds in its epilogue;
3. ``nn.relu`` becomes the kernel's ReLU epilogue.

The kernel is rebuilt from the build parameters it carries (``KernelSpec``). Runs in the graph
passes, after FoldConstant.
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax
from tvm.relax.expr_functor import PyExprMutator, mutator

from edgec.passes.sparse_conv.ops import KernelSpec

_AFFINE = {"relax.add", "relax.subtract", "relax.multiply", "relax.divide"}


def _per_channel(expr, cout: int):
    """The constant as a [Cout] float64 vector, or None."""
    if not isinstance(expr, tvm.ir.Constant):
        return None
    value = expr.value.numpy()
    if value.size == 1:
        return np.full(cout, float(value.reshape(-1)[0]))
    if value.shape[-1:] == (cout,) and value.size == cout:
        return value.reshape(cout).astype(np.float64)
    return None


class _Plan:
    def __init__(self, conv_var, call, spec):
        self.conv_var, self.call, self.spec = conv_var, call, spec
        self.scale = self.shift = None  # y -> y * scale + shift
        self.residual = None
        self.relu = False
        self.end = conv_var


@tvm.transform.module_pass(opt_level=0, name="FuseSparseEpilogue")
class FuseSparseEpilogue:
    def transform_module(self, mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        specs = {gv: KernelSpec.of(f) for gv, f in mod.functions_items() if isinstance(f, tvm.tirx.PrimFunc)}
        specs = {gv: s for gv, s in specs.items() if s is not None}
        if not specs:
            return mod
        for gv, func in list(mod.functions_items()):
            if isinstance(func, relax.Function):
                plans = _plan(func, specs)
                if plans:
                    mod = _Rewriter(mod, plans).run(gv, func)
        return relax.transform.DeadCodeElimination()(mod)


def _plan(func, specs) -> dict:
    bindings, uses = {}, {}

    def count(expr):
        relax.analysis.post_order_visit(expr, lambda e: uses.__setitem__(e, uses.get(e, 0) + 1)
                                        if isinstance(e, relax.Var) else None)

    order = []
    for block in func.body.blocks:
        for b in block.bindings:
            value = b.value
            bindings[b.var] = value
            order.append(b.var)
            count(value)
    count(func.body.body)
    consumer = {}
    for var in order:
        value = bindings[var]
        if isinstance(value, relax.Call):
            for arg in value.args:
                if isinstance(arg, relax.Var):
                    consumer.setdefault(arg, []).append(var)
    plans = {}
    for var in order:
        call = bindings[var]
        if not (isinstance(call, relax.Call) and call.op.same_as(tvm.ir.Op.get("relax.call_tir"))):
            continue
        spec = specs.get(call.args[0])
        if spec is None or spec.relu or spec.residual:
            continue
        plan = _Plan(var, call, spec)
        weight, bias = call.args[1].fields[-3], call.args[1].fields[-2]
        foldable = isinstance(weight, tvm.ir.Constant) and isinstance(bias, tvm.ir.Constant)
        while uses.get(plan.end, 0) == 1 and len(consumer.get(plan.end, [])) == 1:
            nxt = consumer[plan.end][0]
            value = bindings[nxt]
            if not isinstance(value, relax.Call) or not isinstance(value.op, tvm.ir.Op):
                break
            op = value.op.name
            if op == "relax.nn.relu":
                plan.relu, plan.end = True, nxt
                break
            if op not in _AFFINE or len(value.args) != 2:
                break
            x, c = value.args
            if not x.same_as(plan.end):
                if op in ("relax.add", "relax.multiply"):
                    x, c = c, x
                else:
                    break
            if not x.same_as(plan.end):
                break
            vec = _per_channel(c, spec.cout)
            if vec is not None and foldable and plan.residual is None:
                scale = np.ones(spec.cout) if plan.scale is None else plan.scale
                shift = np.zeros(spec.cout) if plan.shift is None else plan.shift
                if op == "relax.add":
                    shift = shift + vec
                elif op == "relax.subtract":
                    shift = shift - vec
                elif op == "relax.multiply":
                    scale, shift = scale * vec, shift * vec
                else:
                    scale, shift = scale / vec, shift / vec
                plan.scale, plan.shift, plan.end = scale, shift, nxt
                continue
            if (op == "relax.add" and plan.residual is None and vec is None
                    and _same_shape(c, plan.conv_var)):
                plan.residual, plan.end = c, nxt
                continue
            break
        if plan.end is not var:
            plans[plan.end] = plan
    return plans


def _same_shape(a, b) -> bool:
    ta, tb = a.ty, b.ty
    if not isinstance(ta, relax.TensorType) or ta.shape is None or tb.shape is None:
        return False
    if str(ta.dtype) != str(tb.dtype) or len(ta.shape) != len(tb.shape):
        return False
    analyzer = tvm.sym.analyzer.Analyzer()
    return all(analyzer.can_prove_equal(x, y) for x, y in zip(ta.shape, tb.shape))


@mutator
class _Rewriter(PyExprMutator):
    def __init__(self, mod, plans):
        super().__init__(mod)
        self.mod_, self.plans = mod, plans

    def run(self, gv, func):
        self.builder_.update_func(gv, self.visit_expr(func))
        return self.builder_.get()

    def visit_var_binding_(self, binding):
        plan = self.plans.get(binding.var)
        if plan is None:
            return super().visit_var_binding_(binding)
        spec = plan.spec
        fused = KernelSpec(spec.flow, spec.kvol, spec.cin, spec.cout, spec.dtype, plan.relu,
                           plan.residual is not None, spec.gpu)
        gv = self.builder_.add_func(fused.build(), fused.name)
        args = list(plan.call.args[1].fields)
        if plan.scale is not None:
            w = args[-3].value.numpy()
            b = args[-2].value.numpy()
            args[-3] = relax.const((w * plan.scale).astype(w.dtype))
            args[-2] = relax.const((b * plan.scale + plan.shift).astype(b.dtype))
        if plan.residual is not None:
            args[-1] = plan.residual
        args = [self.visit_expr(a) for a in args]
        call = relax.call_tir(gv, args, plan.call.ty)
        new_var = self.builder_.emit(call, binding.var.name)
        self.set_var_remap(binding.var, new_var)
