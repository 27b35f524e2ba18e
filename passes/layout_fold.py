"""Fold layout movers into neighbouring compute kernels, between ``FuseOps`` and ``FuseTIR``.

``FoldLayoutIntoConsumers``: a fused group that only moves data (a transpose, reshape+transpose
around attention heads, the NCHW→NHWC transpose at a CNN's input) and whose every consumer is a
compute group (conv, matmul: a reduction) is merged into each consumer. ``FuseTIR`` then makes
one kernel of each, and the default schedules inline the move into the consumer's loads (or its
padding pass), so the transposed tensor is never written out.

``FoldLayoutIntoProducers`` then takes the movers that are left: one whose input comes from a
compute group it alone reads is merged into that group, and the schedules compute the move in
the kernel's epilogue, so the result is stored at its moved positions. This is what removes the
attention ``K^T`` transpose: read through a matmul's vectorized inner loop it would become
gathers, but written by the K projection it costs only the stores, one per output element
against the projection's ``K`` multiply-adds per element.
"""

from __future__ import annotations

import math

import tvm
import tvm.sym
from tvm import relax, s_tir, tirx
from tvm.ir.expr import GenericConst  # relax.Constant in TVM 0.27

from edgec.passes.layout_count import is_layout_kernel, root_blocks, variable_uses, walk_stmts


def _primitive(func) -> bool:
    return isinstance(func, relax.Function) and func.attrs is not None and "Primitive" in func.attrs


def _kernels(mod, func: relax.Function) -> list:
    call_tir = tvm.ir.Op.get("relax.call_tir")
    found = []

    def visit(expr):
        if isinstance(expr, relax.Call) and expr.op == call_tir:
            found.append(mod[expr.args[0]])

    relax.analysis.post_order_visit(func, visit)
    return found


def _is_mover(mod, func) -> bool:
    kernels = _kernels(mod, func)
    return bool(kernels) and all(is_layout_kernel(k) for k in kernels)


def _inner_stride(mod, func) -> int | None:
    """How far apart, in the mover's input, two neighbours along its output's last axis lie.

    1 means the consumer's vectorized inner loop still reads contiguous memory after folding;
    anything else turns its vector loads into gathers. None when it cannot be worked out.
    """
    kernels = _kernels(mod, func)
    if len(kernels) != 1 and not _is_chain(func):
        return None
    points = None
    for kernel in reversed(kernels):
        store = _composed_store(kernel)
        if store is None:
            return None
        if points is None:
            last = len(store.indices) - 1
            points = [[0] * len(store.indices), [0] * last + [1]]
        points = [_load_index(store, p) for p in points]
        if None in points:
            return None
        src_shape = list(store.value.source.shape)
    offset = 0
    for k, (a, b) in enumerate(zip(*points)):
        if a == b:
            continue
        trailing = src_shape[k + 1:]
        if not all(isinstance(d, tirx.IntImm) for d in trailing):
            return None  # a symbolic dim below the moving axis: the stride is not a constant
        offset += (b - a) * math.prod(int(d) for d in trailing)
    return offset


def _is_chain(func) -> bool:
    (block,) = func.body.blocks
    return all(len(b.value.args[1].fields) == 1 for b in block.bindings)


def _composed_store(kernel):
    sch = s_tir.Schedule(kernel)
    blocks = root_blocks(sch)
    if not blocks:
        return None
    try:
        for block in blocks[:-1]:
            sch.compute_inline(block)
    except Exception:  # not one move
        return None
    stores = [n for n in walk_stmts(sch.mod["main"].body) if isinstance(n, tirx.BufferStore)]
    return stores[0] if len(stores) == 1 else None


def _load_index(store, point) -> list[int] | None:
    analyzer = tvm.sym.Analyzer()
    for var, value in zip(store.indices, point):
        if not isinstance(var, tirx.Var):
            return None
        analyzer.bind(var, tvm.tirx.const(value, "int64"))
    values = [analyzer.simplify(i) for i in store.value.indices]
    return [int(v) for v in values] if all(isinstance(v, tirx.IntImm) for v in values) else None


def _is_conv(func) -> bool:
    """Convs absorb any move: their padding pass copies the input anyway, and reads it once."""
    names = []
    relax.analysis.post_order_visit(func, lambda e: names.append(e.name_hint) if isinstance(e, relax.GlobalVar) else None)
    return any("conv" in n for n in names)


def _computes(mod, func) -> bool:
    for k in _kernels(mod, func):
        sch = s_tir.Schedule(k)
        for block in root_blocks(sch):
            if sch.get(block).init is not None:
                return True
    return False


def _merge(producer: relax.Function, consumer: relax.Function, index: int) -> relax.Function | None:
    """``consumer`` with its ``index``-th parameter computed by ``producer``'s body inline.

    Each function has its own symbolic dims (a dynamic batch): the consumer's become the
    producer's, which the merged function's parameters define. None when some dim would be
    left undefined (a consumer dim that is an expression of the producer's, ``w // 4``).
    """
    fresh = [relax.Var(p.name, p.ty) for p in producer.params]
    producer = producer.bind_params(dict(zip(producer.params, fresh)))
    symbols = {}
    for theirs, ours in zip(_dims(consumer.params[index]), _dims(producer.body.body)):
        if isinstance(theirs, tirx.Var) and not (isinstance(ours, tirx.Var) and ours.same_as(theirs)):
            if not isinstance(ours, tirx.Var):
                return None
            symbols[theirs] = ours
    if symbols:
        consumer = consumer.bind_symbolic_vars(symbols)
    (prod_block,) = producer.body.blocks
    consumer_body = consumer.bind_params({consumer.params[index]: producer.body.body})
    (cons_block,) = consumer_body.body.blocks
    block = relax.DataflowBlock(list(prod_block.bindings) + list(cons_block.bindings))
    params = fresh + list(consumer_body.params)
    merged = relax.Function(params, relax.SeqExpr([block], consumer_body.body.body), consumer.ret_ty,
                            consumer.is_pure, consumer.attrs)
    # a symbolic dim no parameter defines (one the consumer derived, say) cannot be fused
    return None if relax.analysis.free_symbolic_vars(merged) else merged


@tvm.transform.module_pass(opt_level=0, name="FoldLayoutIntoConsumers")
class FoldLayoutIntoConsumers:
    """Merge mover groups into their compute consumers so no standalone move kernel remains."""

    def transform_module(self, mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        return _fold_functions(_Folder(mod), mod)


def _fold_functions(folder, mod: tvm.IRModule) -> tvm.IRModule:
    """``folder`` over every Relax function of ``mod`` that is not a fused group; dead code out."""
    for gv, func in list(mod.functions.items()):
        if isinstance(func, relax.Function) and not _primitive(func):
            folder.builder_.update_func(gv, folder.fold(func))
    return relax.transform.DeadCodeElimination()(folder.builder_.get())


@relax.expr_functor.mutator
class _Folder(relax.PyExprMutator):
    def __init__(self, mod):
        super().__init__(mod)
        self.mod = mod
        self.users: dict = {}
        self.count = 0

    def fold(self, func: relax.Function) -> relax.Function:
        self._count_uses(func)
        return self.visit_expr(func)

    def _count_uses(self, func: relax.Function) -> None:
        self.users.update(variable_uses(func))

    def _group(self, expr):
        if not (isinstance(expr, relax.Call) and isinstance(expr.op, relax.GlobalVar)):
            return None
        mod = self.mod if expr.op in self.mod.functions else self.builder_.get()  # or one we merged
        return mod[expr.op] if _primitive(mod[expr.op]) else None

    def visit_call_(self, call):
        call = super().visit_call_(call)
        while True:  # one mover per round: the merged call may take another
            merged = self._merge_one(call)
            if merged is None:
                return call
            call = merged

    def _merge_one(self, call):
        consumer = self._group(call) or self._wrap(call)
        if consumer is None or not _computes(self.builder_.get(), consumer):
            return None
        args = _args(call)
        for i, arg in enumerate(args):
            producer_call = self.lookup_binding(arg) if isinstance(arg, relax.Var) else None
            producer = self._group(producer_call) or self._wrap(producer_call)
            if producer is None or not _is_mover(self.builder_.get(), producer):
                continue
            # a variable the mutator re-typed is not in the map: no fold, rather than a guess
            if not all(self._consumes(u) for u in self.users.get(arg, [None])):
                continue
            if not _is_conv(consumer) and _inner_stride(self.builder_.get(), producer) != 1:
                continue  # a matmul would read it with a stride in its vectorized loop: keep the copy
            name = f"fused_{self._name(producer_call).removeprefix('fused_')}_{self._name(call).removeprefix('fused_')}"
            merged = _merge(producer, consumer, i)
            if merged is None:
                continue
            gv = self.builder_.add_func(merged, name)
            self.count += 1
            return relax.Call(gv, _args(producer_call) + [a for j, a in enumerate(args) if j != i])
        return None

    def _consumes(self, user) -> bool:
        group = self._group(user) or self._wrap(user)
        return group is not None and _computes(self.builder_.get(), group)

    def _name(self, call) -> str:
        return call.op.name_hint if isinstance(call.op, relax.GlobalVar) else call.args[0].name_hint

    def _wrap(self, call):
        """A lone ``call_tir`` as a one-kernel primitive function, so it can be merged into."""
        if not (isinstance(call, relax.Call) and call.op == tvm.ir.Op.get("relax.call_tir")):
            return None
        tensors = list(call.args[1].fields)
        if not all(isinstance(t, (relax.Var, GenericConst)) for t in tensors):
            return None
        params = [relax.Var(f"p{i}", t.ty) for i, t in enumerate(tensors)]
        out = relax.DataflowVar("out", call.ty)
        body = relax.Call(call.op, [call.args[0], relax.Tuple(params)] + list(call.args[2:]), call.attrs,
                          call.ty_args)
        block = relax.DataflowBlock([relax.VarBinding(out, body)])
        return relax.Function(params, relax.SeqExpr([block], out), call.ty, True,
                              tvm.ir.make_node("ir.DictAttrs", Primitive=True))


def _dims(expr) -> list:
    shape = getattr(expr.ty, "shape", None)
    return list(shape.values) if shape is not None and hasattr(shape, "values") else []


def _args(call) -> list:
    """The tensors a group call or a lone ``call_tir`` takes, in its primitive function's order."""
    if call.op == tvm.ir.Op.get("relax.call_tir"):
        return list(call.args[1].fields)
    return list(call.args)


@tvm.transform.module_pass(opt_level=0, name="FoldLayoutIntoProducers")
class FoldLayoutIntoProducers:
    """Merge each remaining mover group into the compute group whose only reader it is."""

    def transform_module(self, mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        return _fold_functions(_ProducerFolder(mod), mod)


@relax.expr_functor.mutator
class _ProducerFolder(_Folder._cls):
    """Plans on the function as given, whose variables the use counts know (the mutator re-types
    some as it rebuilds), then swaps each planned mover call for its merged kernel."""

    def fold(self, func: relax.Function) -> relax.Function:
        self._count_uses(func)
        values = {b.var: b.value for block in func.body.blocks for b in block.bindings}
        self.plan = [chain for chain in (self._mover_chain(v, values) for v in values.values()) if chain]
        return self.visit_expr(func) if self.plan else func

    def _mover_chain(self, value, values):
        """``value``'s movers, up through single-use movers (a reshape kernel before a transpose),
        and the compute call they come from; None if they do not come from one."""
        movers, call = [], value
        while True:
            group = self._group(call) or self._wrap(call)
            args = _args(call) if group is not None else []
            if len(args) != 1 or not isinstance(args[0], relax.Var) or not _is_mover(self.mod, group):
                return None
            movers.append(call)
            if len(self.users.get(args[0], [])) != 1:
                return None
            call = values.get(args[0])
            producer = self._group(call) or self._wrap(call)
            if producer is not None and _computes(self.mod, producer):
                return movers, call

    def visit_call_(self, call):
        for movers, producer_call in self.plan:
            if call.same_as(movers[0]):
                merged = self._group(movers[0]) or self._wrap(movers[0])
                for upstream in movers[1:] + [producer_call]:
                    merged = _merge(self._group(upstream) or self._wrap(upstream), merged, 0)
                    if merged is None:
                        return relax.PyExprMutator.visit_call_(self, call)
                parts = [self._name(c).removeprefix("fused_") for c in [producer_call] + movers[::-1]]
                gv = self.builder_.add_func(merged, "_".join(["fused"] + parts))
                self.count += 1
                return relax.Call(gv, [self.visit_expr(a) for a in _args(producer_call)])
        return relax.PyExprMutator.visit_call_(self, call)
