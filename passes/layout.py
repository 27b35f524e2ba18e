"""Layout planning: pick one layout for each convolution region of the graph, then clean up.

1. **Classify** every op (``OP_CLASS``): layout-dependent compute (conv, pooling) whose speed
   depends on its input layout; layout-agnostic ops (elementwise, reductions with an axis,
   resize) that follow their producer's layout for free; layout movers (permute_dims, reshape).
2. **Cost the edges**: converting a region to the target family's preferred layout costs the
   bytes of the transforms at its boundary (graph inputs and outputs, and tensors read by ops
   that need the model's layout); it gains, per conv, a fraction (``GAIN``) of the conv's
   multiply-adds: with our CPU schedules NHWC convs run ~4x faster than NCHW, and a copy costs
   about one MAC per byte, so both sides are in the same unit.
3. **Solve for the whole graph**: regions are the connected components of convs joined through
   layout-agnostic ops (union-find); a region is converted when its gain exceeds its cost.
   TVM's ``ConvertLayout`` applies the decision (it takes one layout per op kind, so when
   regions disagree the sum decides for all of them), and ``FoldConstant`` transforms the
   constant weights at compile time.
4. **Cancel and simplify movers** (``simplify_permutes``): permute_dims∘permute_dims composes into
   one, an identity disappears, and a permutation that only moves unit axes becomes a reshape
   (a view, no kernel). What remains is folded into the consuming kernels after fusion by
   :mod:`edgec.passes.layout_fold`.

On CPUs the tiled reduction schedule vectorizes the innermost output axis, which NHWC makes the
channel axis: long, contiguous in both the output and the HWIO weights, whatever the image size.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import tvm
from tvm import relax

logger = logging.getLogger(__name__)

# Preferred layouts per target family: {op: [data layout, kernel layout]}; an empty row keeps
# the model's layouts. x86 stays NHWC rather than NCHWc, by measurement (docs/layout.md): NCHW16c
# through ConvertLayout ran the layout CNN 1.37x slower, because ConvertLayout takes one layout per
# op kind, so a 3-channel stem stays NCHW and a depthwise kernel (I = 1) has no OIHW16i16o form.
_NHWC = {
    "relax.nn.conv2d": ["NHWC", "HWIO"],
    # legalization of conv2d_transpose exists for NCHW only: pin it so it is never converted
    "relax.nn.conv2d_transpose": ["NCHW", "IOHW"],
}
PREFERRED_LAYOUTS: dict[str, dict[str, list[str]]] = {
    "x86": _NHWC,
    "arm_cpu": _NHWC,
    # tensor cores want NHWC, but our DLight default schedules have no tensor-core conv path and
    # no GPU measurement backs a change yet: CUDA keeps the model's layouts until one does
    "cuda": {},
    "vulkan": {},  # our SPIR-V path schedules NCHW; nothing measured says otherwise yet
}
# fraction of a conv's bytes saved by running it in the preferred layout (0: no reason to move)
GAIN = {"x86": 0.75, "arm_cpu": 0.75, "cuda": 0.0, "vulkan": 0.0}

COMPUTE, AGNOSTIC, MOVER, OTHER = "compute", "agnostic", "mover", "other"
_AGNOSTIC_OPS = {
    "add", "subtract", "multiply", "divide", "maximum", "minimum", "power", "nn.relu", "nn.gelu",
    "nn.silu", "sigmoid", "tanh", "clip", "exp", "sqrt", "rsqrt", "negative", "abs", "astype",
    "nn.batch_norm", "mean", "sum", "max", "min", "nn.leakyrelu", "nn.prelu", "erf", "floor",
    "nn.max_pool2d", "nn.avg_pool2d", "nn.adaptive_avg_pool2d", "image.resize2d", "concat",
}
OP_CLASS = {f"relax.{op}": AGNOSTIC for op in _AGNOSTIC_OPS}
OP_CLASS.update({"relax.nn.conv2d": COMPUTE, "relax.matmul": COMPUTE,
                 "relax.permute_dims": MOVER, "relax.reshape": MOVER, "relax.layout_transform": MOVER})


def target_family(target: tvm.target.Target) -> str:
    keys = list(target.keys)
    if target.kind.name in ("cuda", "vulkan"):
        return target.kind.name
    if "arm_cpu" in keys or str(target.attrs.get("mtriple", "")).startswith("aarch64"):
        return "arm_cpu"
    return "x86"


def plan_regions(func: relax.Function, family: str) -> list[dict]:
    """Conv regions of ``func`` with their transform cost and layout gain, in bytes."""
    parent: dict = {}

    def find(v):
        while parent.setdefault(v, v) is not v:
            v = parent[v]
        return v

    convs, boundary = [], []
    for block in func.body.blocks:
        for b in block.bindings:
            call = b.value
            if not isinstance(call, relax.Call) or not isinstance(call.op, tvm.ir.Op):
                continue
            kind = OP_CLASS.get(call.op.name, OTHER)
            tensors = [a for a in call.args if isinstance(a, relax.Var)]
            if kind == COMPUTE and call.op.name == "relax.nn.conv2d":
                convs.append(b)
                parent[find(b.var)] = find(tensors[0]) if tensors else b.var
            elif kind == AGNOSTIC:
                for t in tensors:
                    parent[find(t)] = find(b.var)
            else:
                boundary.extend((t, b.var) for t in tensors)  # a consumer that wants the model layout
    regions: dict = {}
    for conv in convs:
        root = find(conv.var)
        region = regions.setdefault(root, {"convs": 0, "gain": 0.0, "cost": 0.0})
        region["convs"] += 1
        region["gain"] += GAIN.get(family, 0.0) * _macs(conv)
    outputs = [func.body.body] if isinstance(func.body.body, relax.Var) else []
    for edge in list(func.params) + outputs:  # inputs enter, outputs leave, in the model's layout
        if find(edge) in regions and _rank(edge) == 4:
            regions[find(edge)]["cost"] += 2 * _bytes(edge)
    for tensor, _ in boundary:
        if find(tensor) in regions and _rank(tensor) == 4:
            regions[find(tensor)]["cost"] += 2 * _bytes(tensor)
    return list(regions.values())


def _bytes(expr) -> float:
    ty = expr.ty
    shape = getattr(ty, "shape", None)
    if shape is None or not hasattr(shape, "values"):
        return 0.0
    dims = [int(d) if isinstance(d, tvm.tirx.IntImm) else 1 for d in shape.values]
    return float(math.prod(dims)) * tvm.DataType(ty.dtype).bits / 8


def _macs(conv) -> float:
    """Multiply-adds of a conv: what its layout speeds up (a copy costs about a MAC per byte on
    the CPUs we measured, so gains and costs are compared in the same unit)."""
    weight = conv.value.args[1]
    if not hasattr(getattr(weight.ty, "shape", None), "values"):
        return 0.0
    per_output = math.prod(int(d) if isinstance(d, tvm.tirx.IntImm) else 1 for d in weight.ty.shape.values[1:])
    return _bytes(conv.var) / 4 * per_output


def _rank(expr) -> int:
    return getattr(expr.ty, "ndim", -1)


@relax.expr_functor.mutator
class _Permutes(relax.PyExprMutator):
    """permute_dims∘permute_dims → one permute_dims (none for identity); unit-axis moves → reshape."""

    def __init__(self, mod):
        super().__init__(mod)
        self.permute = tvm.ir.Op.get("relax.permute_dims")
        self.reshape = tvm.ir.Op.get("relax.reshape")
        self.sum, self.stack = tvm.ir.Op.get("relax.sum"), tvm.ir.Op.get("relax.stack")
        self.clip = tvm.ir.Op.get("relax.clip")

    def visit_call_(self, call):
        call = super().visit_call_(call)
        if call.op == self.sum:
            return self._sum_of_stack(call)
        if call.op == self.clip:
            return self._clip_as_min_max(call)
        if call.op == self.reshape:  # reshape∘reshape: one view
            inner = self.lookup_binding(call.args[0]) if isinstance(call.args[0], relax.Var) else None
            if isinstance(inner, relax.Call) and inner.op == self.reshape:
                return relax.op.reshape(inner.args[0], call.args[1])
            return call
        if call.op != self.permute:
            return call
        src, axes = call.args[0], _axes(call)
        inner = self.lookup_binding(src) if isinstance(src, relax.Var) else None
        if isinstance(inner, relax.Call) and inner.op == self.permute:
            inner_axes = _axes(inner)
            src, axes = inner.args[0], [inner_axes[a] for a in axes]
        if axes == list(range(len(axes))):
            return src
        shape = getattr(src.ty, "shape", None)
        if shape is not None and hasattr(shape, "values"):
            dims = list(shape.values)
            moved = [a for a in axes if not (isinstance(dims[a], tvm.tirx.IntImm) and int(dims[a]) == 1)]
            if moved == sorted(moved):  # only size-1 axes change place: same bytes, same order
                return relax.op.reshape(src, [dims[a] for a in axes])
        return relax.op.permute_dims(src, axes)


    def _clip_as_min_max(self, call):
        """clip (ReLU6) → minimum(maximum(x, lo), hi): ConvertLayout has no rule for clip and
        would wrap every ReLU6 of a MobileNet in a transpose pair; the elementwise ops follow."""
        x, lo, hi = call.args
        dtype = getattr(x.ty, "dtype", None)
        # the bounds are PrimValues of immediates; anything symbolic keeps the clip
        if dtype is None or not all(isinstance(getattr(v, "value", None), (tvm.tirx.IntImm, tvm.tirx.FloatImm))
                                    for v in (lo, hi)):
            return call
        # bounds of the input's rank: ConvertLayout infers no layout for a rank-0 operand
        ndim = getattr(x.ty, "ndim", -1)
        if ndim < 0:
            return call
        low = relax.const(np.full([1] * ndim, float(lo.value.value), dtype=dtype))
        high = relax.const(np.full([1] * ndim, float(hi.value.value), dtype=dtype))
        return relax.op.minimum(self.builder_.emit(relax.op.maximum(x, low)), high)

    def _sum_of_stack(self, call):
        """sum(stack(a, b, ...), axis=0) (ONNX's variadic Sum) → a + b + ...: no 5-D tensor in the
        way of layout conversion, and elementwise adds that follow any layout."""
        inner = self.lookup_binding(call.args[0]) if isinstance(call.args[0], relax.Var) else None
        axis = call.attrs.axis
        if not (isinstance(inner, relax.Call) and inner.op == self.stack and int(inner.attrs.axis) == 0
                and axis is not None and [int(a) for a in axis] == [0] and not call.attrs.keepdims
                and isinstance(inner.args[0], relax.Tuple)):
            return call
        total, *rest = inner.args[0].fields
        for term in rest[:-1]:
            total = self.builder_.emit(relax.op.add(total, term))
        return relax.op.add(total, rest[-1]) if rest else total


def _axes(call) -> list[int]:
    ndim = call.args[0].ty.ndim
    axes = call.attrs.axes
    return list(range(ndim))[::-1] if axes is None else [int(a) for a in axes]


def simplify_permutes(mod: tvm.IRModule) -> tvm.IRModule:
    for gv, func in list(mod.functions.items()):
        if isinstance(func, relax.Function):
            mod[gv] = _Permutes(mod).visit_expr(func)
    return relax.transform.DeadCodeElimination()(relax.transform.CanonicalizeBindings()(mod))


@tvm.transform.module_pass(opt_level=0, name="PlanLayout")
class PlanLayout:
    """Convert conv regions to the target's preferred layouts where that pays; cancel permutes."""

    def __init__(self, target: tvm.target.Target):
        self.family = target_family(target)
        self.preferred = PREFERRED_LAYOUTS.get(self.family, {})

    def transform_module(self, mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        from edgec.passes.split_projections import split_projections

        mod = simplify_permutes(split_projections(mod))
        if self.preferred and self._pays(mod):
            try:
                converted = relax.transform.ConvertLayout(self.preferred)(mod)
            # an op ConvertLayout cannot infer (5-D reshapes): TVM's errors arrive as Python's
            # builtin exception types, so nothing narrower names them; keeping the layouts is safe
            except Exception as err:  # noqa: BLE001
                logger.info("layout planning keeps the model's layouts: %s", str(err).strip().splitlines()[-1])
                return mod
            mod = relax.transform.FoldConstant()(converted)
        return simplify_permutes(mod)

    def _pays(self, mod) -> bool:
        regions = [r for f in mod.functions.values() if isinstance(f, relax.Function)
                   for r in plan_regions(f, self.family)]
        return sum(r["gain"] - r["cost"] for r in regions) > 0
