"""int4 weight ops mapped onto the one int4 matmul operator (``edgec.passes.int4``).

``com.microsoft::MatMulNBits`` (bits=4) converts directly. Blocked opset-21
``DequantizeLinear`` on a constant INT4/UINT4 tensor becomes an ``int4_dequant`` call that
materializes the weight only if nothing better happens; ``FuseInt4Dequant`` turns
``matmul(x, int4_dequant(...))`` into the fused operator. Every other DequantizeLinear goes to
TVM's own converter.
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax

from edgec.frontend.onnx_converters import _STOCK_MAP, OnnxOpConverter, register
from edgec.passes.int4 import Int4Error, QuantizedWeight, check_weight, emit_int4_matmul
from edgec.passes.int4.dequant import emit_dequant


def _const(expr, what: str, where: str) -> np.ndarray:
    if not isinstance(expr, tvm.ir.Constant):
        raise Int4Error(f"{where}: {what} must be a constant initializer")
    return expr.value.numpy()


def _unpack_nibbles(packed: np.ndarray, count: int) -> np.ndarray:
    """uint8 [..., B] -> [..., count] 4-bit values, low nibble first."""
    packed = packed.astype(np.uint8)
    both = np.stack([packed & 15, packed >> 4], axis=-1).reshape(*packed.shape[:-1], -1)
    return both[..., :count]


@register("MatMulNBits", "com.microsoft")
class MatMulNBits(OnnxOpConverter):
    @classmethod
    def _impl_v1(cls, bb, inputs, attr, params):
        where = f"MatMulNBits '{attr.get('tvm_custom', {}).get('name', '')}'"
        bits, k, n, block = attr.get("bits", 4), attr["K"], attr["N"], attr["block_size"]
        if bits != 4:
            raise Int4Error(f"{where}: bits={bits} is not supported (only 4)")
        if block < 16 or block & (block - 1):
            raise Int4Error(f"{where}: block_size={block} must be a power of two >= 16")
        blocks = -(-k // block)
        b = _const(inputs[1], "B", where)
        if b.size != n * blocks * block // 2:
            raise Int4Error(f"{where}: B has shape {b.shape}, expected ({n}, {blocks}, {block // 2})")
        # onnxruntime pads a partial last block; so do we, with zero activations
        k_pad = blocks * block
        q = _unpack_nibbles(b.reshape(n, blocks * block // 2), k_pad)
        scale = _const(inputs[2], "scales", where).astype(np.float32)
        if scale.size != n * blocks:
            raise Int4Error(f"{where}: scales has shape {scale.shape}, expected ({n}, {blocks})")
        scale = scale.reshape(n, blocks)
        zp = inputs[3] if len(inputs) > 3 else None
        if zp is None:
            zero = np.full((n, blocks), 8.0, np.float32)
        else:
            zp = _const(zp, "zero_points", where)
            if zp.dtype == np.uint8:
                per_row = (blocks + 1) // 2
                if zp.size != n * per_row:
                    raise Int4Error(f"{where}: zero_points has shape {zp.shape}, expected ({n}, {per_row})")
                zero = _unpack_nibbles(zp.reshape(n, per_row), blocks).astype(np.float32)
            else:
                if zp.size != n * blocks:
                    raise Int4Error(f"{where}: zero_points has shape {zp.shape}, expected ({n}, {blocks})")
                zero = zp.reshape(n, blocks).astype(np.float32)
        if len(inputs) > 4 and inputs[4] is not None:
            raise Int4Error(f"{where}: g_idx (act-order) is not supported")
        bias = _const(inputs[5], "bias", where) if len(inputs) > 5 and inputs[5] is not None else None
        qw = QuantizedWeight(q, scale, zero, block)
        check_weight(qw, where)
        x = inputs[0]
        if k_pad != k:
            rank = len(x.ty.shape)
            x = bb.normalize(relax.op.nn.pad(x, [0] * (2 * rank - 1) + [k_pad - k]))
        return emit_int4_matmul(bb, x, qw, bias, where=where)


_INT4_DTYPES = ("int4", "uint4")


def widen_int4_initializers(model):
    """INT4/UINT4 initializers as INT8/UINT8 with the same values: TVM cannot load 4-bit
    tensors, and values within the 4-bit range keep the blocked converter's int4 path exact."""
    import onnx
    from onnx import TensorProto, numpy_helper

    wide = {TensorProto.INT4: np.int8, TensorProto.UINT4: np.uint8}
    inits = model.graph.initializer
    if not any(t.data_type in wide for t in inits):
        return model
    model = onnx.ModelProto.FromString(model.SerializeToString())
    for i, t in enumerate(model.graph.initializer):
        if t.data_type in wide:
            arr = numpy_helper.to_array(t).astype(wide[t.data_type])
            model.graph.initializer[i].CopyFrom(numpy_helper.from_array(arr, t.name))
    # value_info may still declare the 4-bit type; it is re-derived on import
    for vi in list(model.graph.value_info):
        if vi.type.tensor_type.elem_type in wide:
            model.graph.value_info.remove(vi)
    return model


@register("DequantizeLinear")
class DequantizeLinear(OnnxOpConverter):
    """Blocked int4 DequantizeLinear here; the rest to TVM's converter."""

    @classmethod
    def get_converter(cls, opset):
        stock = _STOCK_MAP()["DequantizeLinear"].get_converter(opset)

        def convert(bb, inputs, attr, params):
            if attr.get("block_size", 0):
                if cls._is_int4(inputs[0]):
                    return cls._blocked(bb, inputs, attr)
                return cls._blocked_generic(inputs, attr)
            return stock(bb, inputs, attr, params)

        return convert

    @staticmethod
    def _blocked_generic(inputs, attr):
        """Any blocked DequantizeLinear, as plain Relax: scale (and zero point) repeated
        ``block_size`` times along ``axis`` and cut to the input's length."""
        x, scale = inputs[0], inputs[1]
        zp = inputs[2] if len(inputs) > 2 and inputs[2] is not None else None
        rank = len(x.ty.shape)
        axis, block = attr.get("axis", 1) % rank, attr["block_size"]
        length = x.ty.shape[axis]

        def expand(t):
            rep = relax.op.repeat(t, block, axis)
            return relax.op.strided_slice(rep, [axis], [0], [length])

        out_dtype = str(scale.ty.dtype)
        xf = relax.op.astype(x, "float32")
        if zp is not None:
            xf = relax.op.subtract(xf, expand(relax.op.astype(zp, "float32")))
        y = relax.op.multiply(xf, expand(relax.op.astype(scale, "float32")))
        return relax.op.astype(y, out_dtype) if out_dtype != "float32" else y

    @staticmethod
    def _is_int4(x) -> bool:
        if not isinstance(x, tvm.ir.Constant) or str(x.value.dtype) not in ("int8", "uint8"):
            return False
        values = x.value.numpy()
        lo, hi = (-8, 7) if values.dtype == np.int8 else (0, 15)
        return bool(values.min() >= lo and values.max() <= hi)

    @classmethod
    def _blocked(cls, bb, inputs, attr):
        where = f"DequantizeLinear '{attr.get('tvm_custom', {}).get('name', '')}'"
        x = inputs[0].value.numpy()
        block = attr["block_size"]
        if x.ndim != 2:
            raise Int4Error(f"{where}: blocked int4 weights must be 2-D, not shape {x.shape}")
        axis = attr.get("axis", 1) % 2
        scale = _const(inputs[1], "scale", where).astype(np.float32)
        signed = x.dtype == np.int8
        zp = inputs[2] if len(inputs) > 2 and inputs[2] is not None else None
        zero = _const(zp, "zero_point", where).astype(np.float32) if zp is not None else np.zeros(scale.shape, np.float32)
        # the operator's weight is [N, K] with groups along K = the blocked axis
        q = x.astype(np.int32)
        if axis == 0:
            q, scale, zero = q.T, scale.T, zero.T
        n, k = q.shape
        if k % block:
            raise Int4Error(f"{where}: K={k} is not divisible by block_size={block}")
        if scale.shape != (n, k // block) or zero.shape != scale.shape:
            raise Int4Error(f"{where}: scale shape {tuple(scale.shape)} does not match ({n}, {k // block}) for "
                            f"weight {x.shape}, axis {axis}, block_size {block}")
        if signed:  # store as unsigned nibbles: (q + 8) - (zero + 8)
            q, zero = q + 8, zero + 8
        qw = QuantizedWeight(np.ascontiguousarray(q).astype(np.uint8), np.ascontiguousarray(scale),
                             np.ascontiguousarray(zero), block)
        check_weight(qw, where)
        out_dtype = str(inputs[1].value.dtype)
        return emit_dequant(bb, qw, transpose=(axis == 0), dtype=out_dtype)
