"""Keep NaN and infinities where onnxruntime and PyTorch keep them.

Two places where TVM's lowering changes special values:

* ``relu`` lowers to ``max(x, 0)``, which LLVM emits as IEEE ``maxNum``: a NaN input gives 0.
  onnxruntime and PyTorch propagate NaN, and a NaN that silently becomes 0 hides a broken input
  or weight on the device. ``select(x < 0, 0, x)`` costs the same and keeps NaN (:data:`LEGALIZE`).
* Max reductions and max pooling start from the lowest *finite* float, so a window that is all
  ``-inf`` (a log of zeros, a masked row) gives ``-FLT_MAX`` instead of ``-inf``; likewise min
  reductions and ``+inf``. :class:`ExactReductionIdentity` makes the identity the infinity. It
  is for CPU targets: TVM's GPU cross-thread reduction and rfactor recognize a max (min) reducer
  only by its finite identity, so GPU kernels keep it.

Both were found by the fuzzer (tests/fuzz/regressions/).
"""

from __future__ import annotations

import math

import numpy as np
import tvm
from tvm import s_tir, te, tirx


def _relu(bb, call):
    def nan_keeping_relu(x):
        zero = tirx.const(0, x.dtype)
        return te.compute(x.shape, lambda *i: tirx.Select(x(*i) < zero, zero, x(*i)), name="relu",
                          tag="elemwise")

    return bb.call_te(nan_keeping_relu, call.args[0], primfunc_name_hint="relu")


LEGALIZE = {"relax.nn.relu": _relu}

_FLOATS = ("float16", "float32", "float64")


@tvm.transform.module_pass(opt_level=0, name="ExactReductionIdentity")
class ExactReductionIdentity:
    """In every PrimFunc, a max (min) reduction initialized to the lowest (highest) finite float
    is initialized to -inf (+inf) instead."""

    def transform_module(self, mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        for gvar, func in list(mod.functions.items()):
            if isinstance(func, tirx.PrimFunc):
                fixed = _fix(func)
                if fixed is not None:
                    mod[gvar] = fixed
        return mod


def _fix(func: tirx.PrimFunc):
    sch = s_tir.Schedule(func)
    try:
        root = sch.get_sblock("root")
    except Exception:  # noqa: BLE001 - a kernel without a root block (hand-written): leave it
        return None
    changed = False
    pending = [root]
    while pending:
        for child in sch.get_child_blocks(pending.pop()):
            pending.append(child)
            block = sch.get(child)
            value = _infinite_identity(block)
            if value is None:
                continue
            init = block.init
            store = tirx.BufferStore(init.buffer, tirx.FloatImm(str(init.value.ty), value), init.indices)
            new = s_tir.SBlock(block.iter_vars, block.reads, block.writes, block.name_hint, block.body, store,
                               block.alloc_buffers, block.match_buffers, block.annotations)
            sch.state.replace(sch.get_sref(child), new, {block: new})
            changed = True
    return sch.mod["main"] if changed else None


def _infinite_identity(block) -> float | None:
    init, body = block.init, block.body
    if not (isinstance(init, tirx.BufferStore) and isinstance(init.value, tirx.FloatImm)
            and isinstance(body, tirx.BufferStore)):
        return None
    dtype = str(init.value.ty)
    if dtype not in _FLOATS:
        return None
    largest = float(np.finfo(dtype).max)
    reducer = type(body.value).__name__
    if reducer == "Max" and init.value.value == -largest:
        return -math.inf
    if reducer == "Min" and init.value.value == largest:
        return math.inf
    return None
