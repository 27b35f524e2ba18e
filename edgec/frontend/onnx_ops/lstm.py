"""ONNX LSTM (opset 7 and 14), for any sequence length.

The input projection runs as one matmul per direction; the recurrence runs in
:func:`~edgec.frontend.onnx_ops.recurrence.lstm_kernel`.
"""

from __future__ import annotations

from tvm import relax

from edgec.frontend.onnx_converters import OnnxOpConverter, register
from edgec.frontend.onnx_ops import rnn_common as rc
from edgec.frontend.onnx_ops.recurrence import lstm_kernel


@register("LSTM")
class LSTM(OnnxOpConverter):
    @classmethod
    def _impl_v7(cls, bb, inputs, attr, params):
        x, w, r, b, seq_lens, h0, c0, p = (list(inputs) + [None] * 8)[:8]
        reverse_flags = rc.directions(attr, "LSTM")
        rc.check_attrs("LSTM", attr, ["Sigmoid", "Tanh", "Tanh"], len(reverse_flags))
        rc.reject_sequence_lens("LSTM", attr, seq_lens)
        layout = attr.get("layout", 0)
        x = rc.sequence_first(bb, x, layout)
        seq, batch, _ = rc.dims(x, "LSTM", attr)
        hidden = int(attr.get("hidden_size") or r.ty.shape.values[-1])
        clip = attr.get("clip")
        ys, finals = [], []
        for d, reverse in enumerate(reverse_flags):
            bias = None
            if b is not None:  # B holds Wb then Rb; both are added to the gates
                b_d = rc.direction_slice(bb, b, d)
                bias = relax.op.add(
                    relax.op.strided_slice(b_d, axes=[0], begin=[0], end=[4 * hidden]),
                    relax.op.strided_slice(b_d, axes=[0], begin=[4 * hidden], end=[8 * hidden]),
                )
            xw = rc.input_projection(bb, x, rc.direction_slice(bb, w, d), bias)
            peep = rc.direction_slice(bb, p, d) if p is not None else relax.const(
                [0.0] * (3 * hidden), "float32")
            kernel = rc.add_kernel(bb, lstm_kernel(hidden, reverse, clip), f"onnx_lstm_h{hidden}")
            out = bb.emit(relax.call_tir(
                kernel,
                [xw, rc.direction_slice(bb, r, d), peep,
                 rc.initial_state(bb, h0, d, batch, hidden, layout), rc.initial_state(bb, c0, d, batch, hidden, layout)],
                [relax.TensorType((seq, batch, hidden), "float32"),
                 relax.TensorType((batch, hidden), "float32"),
                 relax.TensorType((batch, hidden), "float32"),
                 relax.TensorType((batch, 4 * hidden), "float32")],
            ))
            ys.append(relax.TupleGetItem(out, 0))
            finals.append([relax.TupleGetItem(out, 1), relax.TupleGetItem(out, 2)])
        return rc.pack_outputs(bb, ys, finals, layout)

    _impl_v14 = _impl_v7
