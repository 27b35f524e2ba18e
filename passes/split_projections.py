"""Split a fused projection whose output is only ever sliced into one projection per slice.

Exported attention with a fused QKV projection (``nn.MultiheadAttention``, timm's ViT) computes::

    qkv = x @ W + b                                   # [B, S, 3·D]
    heads = qkv.reshape(B, S, 3, H, Dh).permute(2, 0, 3, 1, 4)
    q, k, v = heads[0], heads[1], heads[2]            # Gather on a constant index

The permute has three consumers, so it cannot be folded into any of them, and ``k`` is then
transposed again for ``q @ kᵀ``. Two rewrites move the selection back to the weights:

1. ``take(permute_dims(x, axes), c, axis=a)`` → ``permute_dims(take(x, c, axis=axes[a]), axes')``
   and ``take(reshape(y), c, axis=k)``, where the reshape splits ``y``'s last axis and ``k`` is
   its first factor, → ``reshape(strided_slice(y, last axis, c·n, (c+1)·n))``;
2. ``strided_slice(x @ W (+ b), last axis)``, when every user of the projection is such a slice,
   → ``x @ W[:, slice] (+ b[slice])``, whose constant slices ``FoldConstant`` computes at
   compile time.

Each of ``q``, ``k``, ``v`` is then its own projection followed by a plain head split, which
layout folding removes (:mod:`edgec.passes.layout_fold`). No work is added: the three
projections read ``x`` three times instead of once, and write the same bytes.
"""

from __future__ import annotations

import math

import tvm
import tvm_ffi
from tvm import relax
from tvm.ir.expr import GenericConst  # relax.Constant in TVM 0.27

from edgec.passes.layout_count import variable_uses

_TAKE, _PERMUTE, _RESHAPE = "relax.take", "relax.permute_dims", "relax.reshape"
_SLICE, _MATMUL, _ADD = "relax.strided_slice", "relax.matmul", "relax.add"


def _op(expr) -> str | None:
    return expr.op.name if isinstance(expr, relax.Call) and isinstance(expr.op, tvm.ir.Op) else None


def _shape(expr) -> list | None:
    """The dims of ``expr``'s shape: ints where static, TIR expressions where symbolic."""
    shape = getattr(expr.ty, "shape", None)
    if shape is None or not hasattr(shape, "values"):
        return None
    return [int(d) if isinstance(d, tvm.tirx.IntImm) else d for d in shape.values]


def _same_dims(a: list, b: list) -> bool:
    def same(x, y) -> bool:
        if isinstance(x, int) or isinstance(y, int):
            return isinstance(x, int) and isinstance(y, int) and x == y
        return bool(tvm_ffi.structural_equal(x, y))

    return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))


def _scalar_index(expr) -> int | None:
    if isinstance(expr, GenericConst) and expr.value.numpy().ndim == 0:
        return int(expr.value.numpy())
    return None


@relax.expr_functor.mutator
class _SelectionToSlices(relax.PyExprMutator):
    """Rewrite 1: a constant selection moves through permutes and last-axis splits."""

    def visit_call_(self, call):
        call = super().visit_call_(call)
        if _op(call) != _TAKE:
            return call
        index = _scalar_index(call.args[1])
        if index is None or call.attrs.axis is None:
            return call
        moved = self._through(call.args[0], index, int(call.attrs.axis))
        return call if moved is None else moved

    def _through(self, src, index: int, axis: int):
        inner = self.lookup_binding(src) if isinstance(src, relax.Var) else None
        if _op(inner) == _PERMUTE and inner.attrs.axes is not None:
            axes = [int(a) for a in inner.attrs.axes]
            moved = axes[axis]
            rest = [a - (a > moved) for a in axes if a != moved]
            selected = self._through(inner.args[0], index, moved)
            if selected is None:
                selected = relax.op.take(inner.args[0], relax.const(index, "int64"), axis=moved)
            selected = self.builder_.emit(selected)
            return relax.op.permute_dims(selected, rest) if rest != list(range(len(rest))) else selected
        if _op(inner) == _RESHAPE:
            src_shape, split = _shape(inner.args[0]), _shape(inner)
            if src_shape is None or split is None or not src_shape:
                return None
            lead = len(src_shape) - 1
            factors = split[lead:]
            if (axis != lead or not _same_dims(split[:lead], src_shape[:lead]) or not isinstance(src_shape[-1], int)
                    or not all(isinstance(f, int) for f in factors) or math.prod(factors) != src_shape[-1]):
                return None
            width = src_shape[-1] // split[lead]
            piece = self.builder_.emit(relax.op.strided_slice(
                inner.args[0], axes=[lead], begin=[index * width], end=[(index + 1) * width]))
            return relax.op.reshape(piece, split[:lead] + split[lead + 1:])
        return None


@relax.expr_functor.mutator
class _SlicesToProjections(relax.PyExprMutator):
    """Rewrite 2: last-axis slices of a constant-weight projection become projections."""

    def __init__(self, mod, users: dict):
        super().__init__(mod)
        self.users = users

    def visit_call_(self, call):
        call = super().visit_call_(call)
        if _op(call) != _SLICE or not isinstance(call.args[0], relax.Var):
            return call
        shape = _shape(call.args[0])
        axes = _ints(call.args[1])
        if shape is None or axes != [len(shape) - 1] or not _unit_strides(call):
            return call
        if not all(_op(u) == _SLICE for u in self.users.get(call.args[0], [])):
            return call  # the whole projection is needed elsewhere: splitting would compute it twice
        projection = self.lookup_binding(call.args[0])
        (begin,), (end,) = _ints(call.args[2]), _ints(call.args[3])
        split = _split(projection, begin, end, self.lookup_binding)
        return split if split is not None else call


def _ints(values) -> list[int] | None:
    """A strided_slice argument (a tuple of integer immediates) as ints; None if symbolic."""
    fields = getattr(values, "fields", None)
    if fields is None:
        return None
    try:
        return [int(getattr(f, "value", f)) for f in fields]
    except TypeError:
        return None


def _unit_strides(call) -> bool:
    return len(call.args) < 5 or all(s == 1 for s in (_ints(call.args[4]) or [0]))


def _split(projection, begin: int, end: int, lookup):
    """``projection[..., begin:end]`` as a projection on sliced constants, or None."""
    bias, product = None, projection
    if _op(projection) == _ADD:
        constants = [a for a in projection.args if isinstance(a, GenericConst)]
        others = [a for a in projection.args if isinstance(a, relax.Var)]
        if len(constants) != 1 or len(others) != 1:
            return None
        bias, product = constants[0], lookup(others[0])
    if _op(product) != _MATMUL or not isinstance(product.args[1], GenericConst):
        return None
    weight = product.args[1].value.numpy()
    if weight.ndim != 2:
        return None
    out = relax.op.matmul(product.args[0], relax.const(weight[:, begin:end]))
    if bias is None:
        return out
    b = bias.value.numpy()
    if b.ndim == 0 or b.shape[-1] == 1:
        return relax.op.add(out, bias)
    if b.shape[-1] != weight.shape[1]:
        return None
    return relax.op.add(out, relax.const(b[..., begin:end]))


def split_projections(mod: tvm.IRModule) -> tvm.IRModule:
    """Both rewrites over every Relax function of ``mod``, dead code removed after each."""
    clean = tvm.transform.Sequential([relax.transform.CanonicalizeBindings(), relax.transform.DeadCodeElimination()])
    for gv, func in list(mod.functions.items()):
        if isinstance(func, relax.Function):
            mod[gv] = _SelectionToSlices(mod).visit_expr(func)
    mod = clean(mod)
    for gv, func in list(mod.functions.items()):
        if isinstance(func, relax.Function):
            mod[gv] = _SlicesToProjections(mod, variable_uses(func)).visit_expr(func)
    return clean(mod)
