"""int4 embeddings: ``take(table, indices, axis=0)`` on a packed int4 table.

The table ``[V, D]`` is a :class:`QuantizedWeight` with V rows and groups along D (the
matmul operator's conventions with N = V, K = D). It is packed row-major, ``[V, D/2]`` uint8
(low nibble = even d) with ``scale`` and ``min = -zero*scale`` as ``[V, D/group]`` fp32, so a
gathered row is one contiguous run of bytes. The kernel dequantizes only the gathered rows; the
float table never exists. An index outside ``[0, V)`` (after ONNX's one wrap of negative
indices) is clamped to the nearest row, where the float ``take`` would read out of bounds.

The kernel is an ordinary block left to the default schedules: CPU rules vectorize it, GPU
targets get DLight's fallback binding. It is opaque, so FuseOps keeps it a kernel of its own.
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm.sym.analyzer import Analyzer
from tvm import relax
from tvm.script import tirx as T

from edgec.passes.int4.op import Int4Error, check_weight
from edgec.passes.int4.packing import QuantizedWeight, pack_rows


def gather_kernel(v: int, d: int, group: int):
    v64, d64, groups, half, g64 = T.int64(v), T.int64(d), T.int64(d // group), T.int64(d // 2), T.int64(group)

    @T.prim_func(private=True, s_tir=True)
    def int4_take(idx: T.handle, w: T.Buffer((v64, half), "uint8"), s: T.Buffer((v64, groups), "float32"),
                  mn: T.Buffer((v64, groups), "float32"), y: T.handle):
        T.func_attr({"tirx.noalias": True, "op_pattern": 8})
        m = T.int64()
        I = T.match_buffer(idx, (m,), "int64")
        Y = T.match_buffer(y, (m, d64), "float32")
        for i, j in T.grid(m, d64):
            with T.sblock("gather"):
                vi, vj = T.axis.remap("SS", [i, j])
                Y[vi, vj] = T.Cast("float32", (w[T.max(T.min(I[vi], v64 - T.int64(1)), T.int64(0)), vj // T.int64(2)]
                                               >> T.Cast("uint8", vj % T.int64(2) * T.int64(4))) & T.uint8(15)) \
                    * s[T.max(T.min(I[vi], v64 - T.int64(1)), T.int64(0)), vj // g64] \
                    + mn[T.max(T.min(I[vi], v64 - T.int64(1)), T.int64(0)), vj // g64]

    return int4_take


def emit_int4_take(bb: relax.BlockBuilder, indices: relax.Expr, qw: QuantizedWeight,
                   where: str = "int4 embedding") -> relax.Expr:
    """``take(dequant(qw), indices, axis=0)``: shape ``indices.shape + [D]``, fp32."""
    check_weight(qw, where)
    v, d = qw.shape
    ity = indices.ty
    if not str(ity.dtype).startswith(("int", "uint")):
        raise Int4Error(f"{where}: indices must be integers, not {ity.dtype}")
    lead = list(ity.shape)
    m = tvm.tirx.IntImm("int64", 1)
    for dim in lead:
        m = m * dim
    m = Analyzer().simplify(m)
    flat = bb.normalize(relax.op.reshape(indices, [m]))
    if str(ity.dtype) != "int64":
        flat = bb.normalize(relax.op.astype(flat, "int64"))
    w, s, mn = pack_rows(qw, "float32")
    gv = bb.add_func(gather_kernel(v, d, qw.group), "int4_take")
    y = bb.normalize(relax.call_tir(gv, [flat] + [relax.const(np.ascontiguousarray(a)) for a in (w, s, mn)],
                                   relax.TensorType([m, d], "float32")))
    return relax.op.reshape(y, lead + [d])
