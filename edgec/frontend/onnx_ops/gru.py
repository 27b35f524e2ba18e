"""ONNX GRU (opset 7 and 14), for any sequence length, both ``linear_before_reset`` modes.

The input projection runs as one matmul per direction; the recurrence runs in
:func:`~edgec.frontend.onnx_ops.recurrence.gru_kernel`.
"""

from __future__ import annotations

from tvm import relax

from edgec.frontend.onnx_converters import OnnxOpConverter, register
from edgec.frontend.onnx_ops import rnn_common as rc
from edgec.frontend.onnx_ops.recurrence import gru_kernel


@register("GRU")
class GRU(OnnxOpConverter):
    @classmethod
    def _impl_v7(cls, bb, inputs, attr, params):
        x, w, r, b, seq_lens, h0 = (list(inputs) + [None] * 6)[:6]
        reverse_flags = rc.directions(attr, "GRU")
        rc.check_attrs("GRU", attr, ["Sigmoid", "Tanh"], len(reverse_flags))
        rc.reject_sequence_lens("GRU", attr, seq_lens)
        layout = attr.get("layout", 0)
        x = rc.sequence_first(bb, x, layout)
        seq, batch, _ = rc.dims(x, "GRU", attr)
        hidden = int(attr.get("hidden_size") or r.ty.shape.values[-1])
        lbr = bool(attr.get("linear_before_reset", 0))
        clip = attr.get("clip")
        ys, finals = [], []
        for d, reverse in enumerate(reverse_flags):
            bias, rb_h = None, relax.const([0.0] * hidden, "float32")
            if b is not None:
                # Wb joins every gate; Rb joins z and r here, and the h gate inside the kernel
                b_d = rc.direction_slice(bb, b, d)
                wb = relax.op.strided_slice(b_d, axes=[0], begin=[0], end=[3 * hidden])
                rb_zr = relax.op.strided_slice(b_d, axes=[0], begin=[3 * hidden], end=[5 * hidden])
                zeros_h = relax.const([0.0] * hidden, "float32")
                bias = relax.op.add(wb, relax.op.concat([rb_zr, zeros_h], axis=0))
                rb_h = bb.normalize(relax.op.strided_slice(b_d, axes=[0], begin=[5 * hidden], end=[6 * hidden]))
            xw = rc.input_projection(bb, x, rc.direction_slice(bb, w, d), bias)
            kernel = rc.add_kernel(bb, gru_kernel(hidden, reverse, clip, lbr), f"onnx_gru_h{hidden}")
            out = bb.emit(relax.call_tir(
                kernel,
                [xw, rc.direction_slice(bb, r, d), rb_h, rc.initial_state(bb, h0, d, batch, hidden, layout)],
                [relax.TensorType((seq, batch, hidden), "float32"),
                 relax.TensorType((batch, hidden), "float32"),
                 relax.TensorType((batch, 3 * hidden), "float32")],
            ))
            ys.append(relax.TupleGetItem(out, 0))
            finals.append([relax.TupleGetItem(out, 1)])
        return rc.pack_outputs(bb, ys, finals, layout)

    _impl_v14 = _impl_v7
