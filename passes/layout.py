"""Layout choice: run convolutions in the layout each target family computes fastest.

A per-target table gives the preferred data/kernel layouts. TVM's ``ConvertLayout`` rewrites
the convolutions and lets layout-agnostic ops (elementwise, pooling, reductions with an axis)
follow their producer, so transforms remain only at the graph's edges; the kernel transforms
apply to constant weights and are folded at compile time.

On CPUs the tiled reduction schedule vectorizes the innermost output axis, which NHWC makes the
channel axis: long, contiguous in both the output and the HWIO weights, whatever the image size.
"""

from __future__ import annotations

import tvm
from tvm import relax

# target family → {op: [data layout, kernel layout]}; a family with no entry keeps the model's
_CPU_LAYOUTS = {
    "relax.nn.conv2d": ["NHWC", "HWIO"],
    # legalization of conv2d_transpose exists for NCHW only: pin it so it is never converted
    "relax.nn.conv2d_transpose": ["NCHW", "IOHW"],
}
PREFERRED_LAYOUTS: dict[str, dict[str, list[str]]] = {
    "x86": _CPU_LAYOUTS,
    "arm_cpu": _CPU_LAYOUTS,
    "cuda": {},
}


def target_family(target: tvm.target.Target) -> str:
    keys = list(target.keys)
    if target.kind.name == "cuda":
        return "cuda"
    if "arm_cpu" in keys or str(target.attrs.get("mtriple", "")).startswith("aarch64"):
        return "arm_cpu"
    return "x86"


@tvm.transform.module_pass(opt_level=0, name="PlanLayout")
class PlanLayout:
    """Convert convolutions to the target's preferred layouts; fold the weight transforms."""

    def __init__(self, target: tvm.target.Target):
        self.preferred = PREFERRED_LAYOUTS.get(target_family(target), {})

    def transform_module(self, mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        if not self.preferred:
            return mod
        mod = relax.transform.ConvertLayout(self.preferred)(mod)
        return relax.transform.FoldConstant()(mod)
