"""``int4_dequant``: a blocked int4 constant turned back into a float tensor.

Emitted by the blocked-DequantizeLinear importer so that the model stays correct whatever
consumes the weight. Its PrimFunc carries the group size (``int4.group``) and its arguments are
the :class:`QuantizedWeight` itself, so :mod:`fuse` can rebuild the weight and replace
``matmul(x, int4_dequant(...))`` by the fused operator, which never materializes it.
"""

from __future__ import annotations

import numpy as np
from tvm import relax
from tvm.script import tirx as T

from edgec.passes.int4.packing import QuantizedWeight

GROUP_ATTR = "int4.group"
TRANSPOSE_ATTR = "int4.transpose"


def _dequant_kernel(n: int, k: int, group: int, transpose: bool, dtype: str):
    out_shape = (k, n) if transpose else (n, k)

    @T.prim_func(private=True, s_tir=True)
    def int4_dequant(w: T.Buffer((n, k // 2), "uint8"), s: T.Buffer((n, k // group), "float32"),
                     z: T.Buffer((n, k // group), "float32"), out: T.Buffer(out_shape, dtype)):
        for i, j in T.grid(n, k):
            with T.sblock("dequant"):
                vi, vj = T.axis.remap("SS", [i, j])
                if transpose:
                    out[vj, vi] = T.Cast(dtype, (T.Cast("float32", (w[vi, vj // 2] >> T.Cast("uint8", vj % 2 * 4))
                                                        & T.uint8(15)) - z[vi, vj // group]) * s[vi, vj // group])
                else:
                    out[vi, vj] = T.Cast(dtype, (T.Cast("float32", (w[vi, vj // 2] >> T.Cast("uint8", vj % 2 * 4))
                                                        & T.uint8(15)) - z[vi, vj // group]) * s[vi, vj // group])

    return int4_dequant.with_attr(GROUP_ATTR, group).with_attr(TRANSPOSE_ATTR, int(transpose))


def emit_dequant(bb: relax.BlockBuilder, qw: QuantizedWeight, transpose: bool, dtype: str = "float32"):
    """The dequantized weight, ``[K, N]`` when ``transpose`` else ``[N, K]``."""
    n, k = qw.shape
    gv = bb.add_func(_dequant_kernel(n, k, qw.group, transpose, dtype), "int4_dequant")
    packed = np.ascontiguousarray(qw.q[:, 0::2] | (qw.q[:, 1::2] << 4))
    args = [relax.const(packed), relax.const(qw.scale.astype(np.float32)), relax.const(qw.zero.astype(np.float32))]
    shape = [k, n] if transpose else [n, k]
    return relax.call_tir(gv, args, relax.TensorType(shape, dtype))


def weight_of(args, group: int) -> QuantizedWeight:
    """The QuantizedWeight an ``int4_dequant`` call was made from."""
    packed, scale, zero = (a.value.numpy() for a in args)
    q = np.stack([packed & 15, packed >> 4], axis=-1).reshape(packed.shape[0], -1).astype(np.uint8)
    return QuantizedWeight(q, scale, zero, group)
