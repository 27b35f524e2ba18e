"""LayerNormalization (opset 17) with all three outputs and ``stash_type``.

Stock TVM returns placeholders for ``Mean`` and ``InvStdDev``, ignores ``stash_type`` and needs
``Scale`` to have exactly the normalized shape. This computes the statistics in the stash type
(float32 by default), broadcasts ``Scale``/``B`` as ONNX allows, and returns the statistics with
the normalized axes kept as size 1, as the spec says. Unused outputs are removed by dead-code
elimination, so a model that reads only ``Y`` pays nothing for them.
"""

from __future__ import annotations

from tvm import relax

from edgec.frontend.onnx_converters import OnnxOpConverter, register

_STASH_DTYPES = {1: "float32", 10: "float16", 11: "float64", 16: "bfloat16"}


@register("LayerNormalization")
class LayerNormalization(OnnxOpConverter):
    @classmethod
    def _impl_v17(cls, bb, inputs, attr, params):
        x, scale, bias = inputs[0], inputs[1], inputs[2]
        rank = len(x.ty.shape)
        axis = attr.get("axis", -1)
        axis = axis + rank if axis < 0 else axis
        if not 0 <= axis < rank:
            raise ValueError(f"LayerNormalization axis {attr.get('axis')} is out of range for rank {rank}")
        epsilon = attr.get("epsilon", 1e-5)
        dtype = str(x.ty.dtype)
        stash = _STASH_DTYPES.get(attr.get("stash_type", 1), "float32")
        axes = list(range(axis, rank))

        xs = bb.normalize(relax.op.astype(x, stash)) if dtype != stash else x
        mean = bb.normalize(relax.op.mean(xs, axes, keepdims=True))
        centered = bb.normalize(relax.op.subtract(xs, mean))
        var = relax.op.mean(relax.op.multiply(centered, centered), axes, keepdims=True)
        inv_std = bb.normalize(relax.op.rsqrt(relax.op.add(var, relax.const(epsilon, stash))))
        normed = relax.op.multiply(centered, inv_std)
        if dtype != stash:
            normed = relax.op.astype(normed, dtype)
        y = relax.op.multiply(normed, scale)
        if bias is not None:
            y = relax.op.add(y, bias)
        return relax.Tuple([bb.normalize(y), mean, inv_std])
