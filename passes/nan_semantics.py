"""Legalizations that keep NaN where onnxruntime and PyTorch keep it.

TVM lowers ``relu`` to ``max(x, 0)``, which LLVM emits as IEEE ``maxNum``: a NaN input gives 0.
onnxruntime and PyTorch propagate NaN through ReLU, and a NaN that silently becomes 0 hides a
broken input or weight on the device. ``select(x < 0, 0, x)`` costs the same and keeps NaN
(the fuzzer found this: tests/fuzz/regressions/).
"""

from __future__ import annotations

from tvm import te, tirx


def _relu(bb, call):
    def nan_keeping_relu(x):
        zero = tirx.const(0, x.dtype)
        return te.compute(x.shape, lambda *i: tirx.Select(x(*i) < zero, zero, x(*i)), name="relu",
                          tag="elemwise")

    return bb.call_te(nan_keeping_relu, call.args[0], primfunc_name_hint="relu")


LEGALIZE = {"relax.nn.relu": _relu}
