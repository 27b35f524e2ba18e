"""ONNX Attention (opset 23-25): scaled dot-product attention with masks, KV cache and GQA.

Stock TVM's ``Attention`` converter is onnxruntime's ``com.microsoft.Attention`` (packed QKV
weights, ``num_heads``); a default-domain Attention node reaches it and fails. This converter
follows the ONNX reference (``onnx/reference/ops/op_attention.py``) step by step: 3-D inputs split
into heads, ``sqrt(scale)`` applied to Q and K each, past key/value concatenated, an additive bias
built from ``attn_mask`` (bool or float, padded to the key length), ``is_causal`` (bottom-right
aligned after a cache), the sliding window and ``nonpad_kv_seqlen``; grouped-query heads repeat
K/V; softcap; softmax in ``softmax_precision``; rows with no attendable key give zeros; and the
four ``qk_matmul_output_mode`` outputs. Nodes carrying ``num_heads`` are the Microsoft op and
go to the stock converter.
"""

from __future__ import annotations

import numpy as np
from tvm import relax

from edgec.frontend.onnx_converters import _STOCK_MAP, OnnxOpConverter, register

_ONNX_FLOAT_DTYPES = {1: "float32", 10: "float16", 11: "float64", 16: "bfloat16"}


def _shape(expr, what: str) -> list[int]:
    try:
        return [int(d) for d in expr.ty.shape]
    except (TypeError, AttributeError):
        raise ValueError(f"Attention needs static shapes; {what} has shape {expr.ty.shape}") from None


def _split_heads(bb, x, heads: int):
    b, s, hidden = _shape(x, "a 3-D input")
    x = bb.normalize(relax.op.reshape(x, (b, s, heads, hidden // heads)))
    return bb.normalize(relax.op.permute_dims(x, (0, 2, 1, 3)))


def _window_allowed(q_len, kv_len, offset, left, right):
    """Static (q, kv) mask of keys inside the causal frontier / sliding window at ``offset``."""
    i = np.arange(q_len).reshape(q_len, 1) + offset
    j = np.arange(kv_len).reshape(1, kv_len)
    allowed = np.ones((q_len, kv_len), dtype=bool)
    if left is not None:
        allowed &= (i - j) <= left
    if right is not None:
        allowed &= (j - i) <= right
    return allowed


@register("Attention")
class Attention(OnnxOpConverter):
    @classmethod
    def _impl_v23(cls, bb, inputs, attr, params):
        if "num_heads" in attr:  # com.microsoft.Attention
            return _STOCK_MAP()["Attention"].get_converter(1)(bb, inputs, attr, params)
        q, k, v = inputs[0], inputs[1], inputs[2]
        mask, past_key, past_value, nonpad = inputs[3], inputs[4], inputs[5], inputs[6]
        dtype = str(q.ty.dtype)
        three_d = len(q.ty.shape) == 3
        if three_d:
            q_heads, kv_heads = attr.get("q_num_heads"), attr.get("kv_num_heads")
            if not q_heads or not kv_heads:
                raise ValueError("Attention with 3-D inputs needs q_num_heads and kv_num_heads")
            q, k, v = _split_heads(bb, q, q_heads), _split_heads(bb, k, kv_heads), _split_heads(bb, v, kv_heads)
        batch, q_heads, q_len, head_size = _shape(q, "Q")

        scale = attr.get("scale", 1.0 / np.sqrt(head_size))
        root = relax.const(np.sqrt(scale), dtype)
        if past_key is not None:
            k = bb.normalize(relax.op.concat([past_key, k], axis=2))
            v = bb.normalize(relax.op.concat([past_value, v], axis=2))
        present_key, present_value = k, v
        kv_heads, kv_len = _shape(k, "K")[1], _shape(k, "K")[2]
        past_len = _shape(past_key, "past_key")[2] if past_key is not None else 0

        bias = cls._bias(bb, attr, dtype, mask, nonpad, batch, q_len, kv_len, past_len)

        if q_heads != kv_heads and q_heads % kv_heads == 0:
            k = bb.normalize(relax.op.repeat(k, q_heads // kv_heads, axis=1))
            v = bb.normalize(relax.op.repeat(v, q_heads // kv_heads, axis=1))
        qk = relax.op.matmul(
            relax.op.multiply(q, root), relax.op.permute_dims(relax.op.multiply(k, root), (0, 1, 3, 2))
        )
        qk = bb.normalize(qk)
        softcap = attr.get("softcap", 0.0)
        if softcap > 0:
            cap = relax.const(softcap, dtype)
            qk = bb.normalize(relax.op.multiply(relax.op.tanh(relax.op.divide(qk, cap)), cap))
        with_bias = bb.normalize(relax.op.add(qk, bias)) if bias is not None else qk

        precision = _ONNX_FLOAT_DTYPES.get(attr.get("softmax_precision"), dtype)
        logits = relax.op.astype(with_bias, precision) if precision != dtype else with_bias
        probs = bb.normalize(relax.op.nn.softmax(logits, axis=-1))
        if bias is not None:
            # a row whose bias is all -inf has no attendable key: zeros, not softmax's NaNs
            # (TVM's max starts from the lowest finite value, so an all -inf row yields that)
            bias_dtype = str(bias.ty.dtype)
            row_max = relax.op.max(bias, axis=-1, keepdims=True)
            masked = relax.op.less_equal(row_max, relax.const(np.finfo(bias_dtype).min, bias_dtype))
            probs = bb.normalize(relax.op.where(masked, relax.const(0, precision), probs))
        probs = bb.normalize(relax.op.astype(probs, dtype)) if precision != dtype else probs

        y = bb.normalize(relax.op.matmul(probs, v))
        if three_d:
            _, heads, _, v_size = _shape(y, "Y")
            y = bb.normalize(relax.op.permute_dims(y, (0, 2, 1, 3)))
            y = bb.normalize(relax.op.reshape(y, (batch, q_len, heads * v_size)))

        mode = attr.get("qk_matmul_output_mode", 0)
        qk_out = {2: with_bias, 3: probs}.get(mode, qk)
        return relax.Tuple([y, present_key, present_value, qk_out])

    @classmethod
    def _bias(cls, bb, attr, dtype, mask, nonpad, batch, q_len, kv_len, past_len):
        """The additive bias (0 or -inf, plus a float mask), or None when nothing is masked."""
        neg_inf = relax.const(-np.inf, dtype)
        zero = relax.const(0, dtype)
        bias = None
        if mask is not None:
            mask_shape = _shape(mask, "attn_mask")
            is_bool = str(mask.ty.dtype) == "bool"
            pad = kv_len - mask_shape[-1]
            if pad > 0:
                fill = np.full(mask_shape[:-1] + [pad], False if is_bool else -np.inf,
                               dtype=bool if is_bool else dtype)
                mask = bb.normalize(relax.op.concat([mask, relax.const(fill)], axis=-1))
            bias = bb.normalize(relax.op.where(mask, zero, neg_inf)) if is_bool else mask

        left = attr.get("left_window_size", -1)
        right = attr.get("right_window_size", -1)
        left = None if left is None or left < 0 else left
        right = None if right is None or right < 0 else right
        causal = attr.get("is_causal", 0) != 0
        if causal:
            right = 0 if right is None else min(right, 0)
        if causal or left is not None or right is not None:
            if nonpad is not None and past_len == 0:
                # a static cache: the frontier of batch b sits at nonpad_kv_seqlen[b] - q_len
                offset = relax.op.subtract(relax.op.astype(nonpad, "int64"), relax.const(q_len, "int64"))
                offset = relax.op.reshape(offset, (batch, 1, 1, 1))
                i = relax.op.add(relax.const(np.arange(q_len).reshape(1, 1, q_len, 1), "int64"), offset)
                j = relax.const(np.arange(kv_len).reshape(1, 1, 1, kv_len), "int64")
                allowed = relax.const(np.ones((1, 1, q_len, kv_len), dtype=bool))
                if left is not None:
                    allowed = relax.op.logical_and(
                        allowed, relax.op.less_equal(relax.op.subtract(i, j), relax.const(left, "int64")))
                if right is not None:
                    allowed = relax.op.logical_and(
                        allowed, relax.op.less_equal(relax.op.subtract(j, i), relax.const(right, "int64")))
                window = bb.normalize(relax.op.where(allowed, zero, neg_inf))
            else:
                allowed = _window_allowed(q_len, kv_len, past_len, left, right)
                window = relax.const(np.where(allowed, 0, -np.inf).astype(dtype))
            bias = window if bias is None else bb.normalize(relax.op.add(bias, window))

        if nonpad is not None:
            valid = relax.op.less(
                relax.const(np.arange(kv_len).reshape(1, kv_len), "int64"),
                relax.op.reshape(relax.op.astype(nonpad, "int64"), (batch, 1)),
            )
            padding = relax.op.reshape(relax.op.where(valid, zero, neg_inf), (batch, 1, 1, kv_len))
            bias = bb.normalize(padding) if bias is None else bb.normalize(relax.op.add(bias, padding))
        return bias
