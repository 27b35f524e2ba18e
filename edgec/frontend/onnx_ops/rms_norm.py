"""RMSNormalization (opset 23), decomposed: stock TVM's ``nn.rms_norm`` fails to legalize when
the normalized axes start at axis 0."""

from __future__ import annotations

from tvm import relax

from edgec.frontend.onnx_converters import OnnxOpConverter, register
from edgec.frontend.onnx_ops.layer_norm import _STASH_DTYPES


@register("RMSNormalization")
class RMSNormalization(OnnxOpConverter):
    @classmethod
    def _impl_v23(cls, bb, inputs, attr, params):
        x, scale = inputs[0], inputs[1]
        rank = len(x.ty.shape)
        axis = attr.get("axis", -1)
        axis = axis + rank if axis < 0 else axis
        if not 0 <= axis < rank:
            raise ValueError(f"RMSNormalization axis {attr.get('axis')} is out of range for rank {rank}")
        dtype = str(x.ty.dtype)
        stash = _STASH_DTYPES.get(attr.get("stash_type", 1), "float32")
        xs = bb.normalize(relax.op.astype(x, stash)) if dtype != stash else x
        mean_sq = relax.op.mean(relax.op.multiply(xs, xs), list(range(axis, rank)), keepdims=True)
        inv_rms = relax.op.rsqrt(relax.op.add(mean_sq, relax.const(attr.get("epsilon", 1e-5), stash)))
        normed = relax.op.multiply(xs, inv_rms)
        if dtype != stash:
            normed = relax.op.astype(normed, dtype)
        return relax.op.multiply(normed, scale)
