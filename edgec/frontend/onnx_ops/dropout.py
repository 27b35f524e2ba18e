"""Dropout for inference: the identity, with an all-true mask when the mask output is used.

Stock TVM emits ``nn.dropout``, a tuple-valued op that layout conversion cannot see through and
whose mask comes out as float, not bool. Training-mode dropout with a nonzero ratio is random
and has no place in a compiled inference model; it is refused.
"""

from __future__ import annotations

import numpy as np
from tvm import relax

from edgec.frontend.onnx_converters import OnnxOpConverter, register
from edgec.frontend.onnx_ops.resize import _const


@register("Dropout")
class Dropout(OnnxOpConverter):
    @classmethod
    def _impl_v1(cls, bb, inputs, attr, params):
        x = inputs[0]
        training = inputs[2] if len(inputs) > 2 else None
        if training is not None:
            try:
                training_on = bool(np.asarray(_const(training)).item())
            except ValueError:
                raise ValueError("Dropout with a run-time training_mode input is not supported") from None
            ratio = inputs[1]
            ratio = 0.5 if ratio is None else float(np.asarray(_const(ratio)).item())
            if training_on and ratio != 0:
                raise ValueError(f"Dropout in training mode (ratio {ratio}) is random; edgec compiles inference")
        if attr.get("tvm_custom", {}).get("num_outputs", 1) < 2:
            return x
        mask = relax.op.full(relax.ShapeExpr(list(x.ty.shape)), relax.const(True, "bool"), "bool")
        return relax.Tuple([x, bb.normalize(mask)])
