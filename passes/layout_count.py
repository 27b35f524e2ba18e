"""Count the standalone layout-changing kernels a lowered module launches.

A kernel counts when all it does is move one tensor's elements to new positions: it reads one
buffer, writes one buffer of the same size, and every store is a load of the input at other
indices (a transpose, a layout_transform, a reshape that was not turned into a view). A fused
kernel that also computes (a conv that reads its input through a transpose) does not count.

The count is taken after ``RewriteDataflowReshape``, as in the build: reshapes that only
reinterpret the buffer become views there and launch nothing.
"""

from __future__ import annotations

import math

import tvm
import tvm.sym
from tvm import relax, s_tir, tirx
from tvm.ir.expr import TensorLoad  # what tirx.BufferLoad builds in TVM 0.27


def count_layout_transforms(mod: tvm.IRModule) -> int:
    """Launches of standalone layout-changing kernels from the module's Relax functions."""
    mod = relax.transform.RewriteDataflowReshape()(mod)
    mod = relax.transform.DeadCodeElimination()(mod)
    movers = {gv.name_hint for gv, f in mod.functions.items()
              if isinstance(f, tirx.PrimFunc) and is_layout_kernel(f)}
    call_tir = tvm.ir.Op.get("relax.call_tir")
    count = 0

    def visit(expr):
        nonlocal count
        if isinstance(expr, relax.Call) and expr.op == call_tir and expr.args[0].name_hint in movers:
            count += 1

    for func in mod.functions.values():
        if isinstance(func, relax.Function):
            relax.analysis.post_order_visit(func, visit)
    return count


def is_layout_kernel(func: tirx.PrimFunc) -> bool:
    """True when ``func`` only permutes one input's elements into one output of the same size."""
    stores: list[tirx.BufferStore] = []
    for node in walk_stmts(func.body):
        if isinstance(node, s_tir.SBlock) and node.init is not None:
            return False  # a reduction computes
        if isinstance(node, tirx.BufferStore):
            stores.append(node)
    if not stores or any(not isinstance(s.value, TensorLoad) for s in stores):
        return False
    written = {s.buffer for s in stores}
    read = {s.value.source for s in stores}
    inputs, outputs = read - written, written - read  # the rest are fused intermediates
    if len(inputs) != 1 or len(outputs) != 1:
        return False
    (src,), (dst,) = inputs, outputs
    if not _same_size(src, dst):
        return False
    if len(stores) > 1:
        # a chain of moves (transpose∘transpose): what the build's inlining leaves is one move
        return _composed_moves(func)
    return not _same_indices(stores[0].indices, stores[0].value.indices)


def variable_uses(func: relax.Function) -> dict:
    """Each variable of ``func``'s bindings → the binding values that use it (a lone call_tir's
    tensors sit in a tuple: every variable inside counts); the function's result adds ``None``,
    a user that is no kernel."""
    users: dict = {}

    def note(user, expr):
        found = []
        relax.analysis.post_order_visit(expr, lambda e: found.append(e) if isinstance(e, relax.Var) else None)
        for var in dict.fromkeys(found):
            users.setdefault(var, []).append(user)

    for block in func.body.blocks:
        for b in block.bindings:
            note(b.value, b.value)
    note(None, func.body.body)
    return users


def root_blocks(sch: s_tir.Schedule) -> list:
    """The blocks under the root block; none for kernels written without one (hand-made TIR)."""
    try:
        return list(sch.get_child_blocks(sch.get_sblock("root")))
    except Exception:  # TVM raises a ScheduleError subclass when there is no block named root
        return []


def _composed_moves(func: tirx.PrimFunc) -> bool:
    sch = s_tir.Schedule(func)
    blocks = root_blocks(sch)
    if not blocks:  # hand-written TIR (a recurrence, say) is compute, not a layout move
        return False
    for block in blocks[:-1]:
        try:
            sch.compute_inline(block)
        except Exception:  # not inlinable: the chain really runs as several moves
            return True
    (store,) = [n for n in walk_stmts(sch.mod["main"].body) if isinstance(n, tirx.BufferStore)]
    analyzer = tvm.sym.Analyzer()
    return not all(analyzer.can_prove_equal(a, b) for a, b in zip(store.indices, store.value.indices)) \
        or len(store.indices) != len(store.value.indices)


def walk_stmts(stmt):
    """Every statement under ``stmt``; TVM exposes no TIR visitor to Python."""
    yield stmt
    for attr in ("body", "block", "then_case", "else_case", "init"):
        child = getattr(stmt, attr, None)
        if isinstance(child, tirx.Stmt):
            yield from walk_stmts(child)
    for child in getattr(stmt, "seq", None) or ():
        yield from walk_stmts(child)


def _same_size(a, b) -> bool:
    """Whether two buffers hold as many elements, symbolic dims (a dynamic batch) included."""
    size_a, size_b = math.prod(a.shape), math.prod(b.shape)
    if isinstance(size_a, int) or isinstance(size_b, int):  # a rank-0 buffer
        return isinstance(size_a, int) and isinstance(size_b, int) and size_a == size_b
    return bool(tvm.sym.Analyzer().can_prove_equal(size_a, size_b))


def _same_indices(a, b) -> bool:
    return len(a) == len(b) and all(x.same_as(y) for x, y in zip(a, b))
