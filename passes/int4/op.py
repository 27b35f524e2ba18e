"""The one int4 weight-matmul operator, emitted as a ``call_tir`` to a packed-weight kernel.

``Y = X · dequant(W)ᵀ (+ bias)`` for ``X[..., K]`` and a :class:`QuantizedWeight` ``W[N, K]``.
The packing and kernel follow the target (``Target.current()`` unless one is given): fp32
activations on CPUs, fp16 (W4A16) on GPUs; other activation dtypes are cast at the boundary.
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm.sym.analyzer import Analyzer
from tvm import relax

from edgec.errors import BadInputError
from edgec.passes.int4 import kernels
from edgec.passes.int4.packing import QuantizedWeight, pack_cpu, pack_rows


class Int4Error(BadInputError):
    """An int4 weight or its quantization parameters are malformed."""


def check_weight(qw: QuantizedWeight, where: str) -> None:
    n, k = qw.shape
    if qw.group < 2 or qw.group % 2 or k % qw.group:
        raise Int4Error(f"{where}: K={k} is not divisible by the group size {qw.group} (or the group is odd)")
    expected = (n, k // qw.group)
    for name, arr in (("scales", qw.scale), ("zero points", qw.zero)):
        if tuple(arr.shape) != expected:
            raise Int4Error(f"{where}: {name} shape {tuple(arr.shape)} does not match (N, K/group) = {expected}")


def _is_gpu(target) -> bool:
    return "gpu" in list(target.keys)


def _cpu_lanes(target) -> int:
    from edgec.schedules.cpu import vector_lanes

    # two vectors of outputs per row: enough independent FMAs to hide their latency
    return 2 * vector_lanes(target, 32)


def emit_int4_matmul(bb: relax.BlockBuilder, x: relax.Expr, qw: QuantizedWeight, bias=None, target=None,
                     where: str = "int4 matmul") -> relax.Expr:
    target = target or tvm.target.Target.current(allow_none=True) or tvm.target.Target("llvm")
    check_weight(qw, where)
    n, k = qw.shape
    shape = list(x.ty.shape)
    if not shape or not isinstance(shape[-1], tvm.tirx.IntImm) or int(shape[-1]) != k:
        raise Int4Error(f"{where}: input shape {shape} does not end in K={k}")
    dtype = str(x.ty.dtype)
    lead = shape[:-1]
    m = 1
    for d in lead:
        m = m * d
    m = Analyzer().simplify(tvm.tirx.IntImm("int64", 1) * m) if lead else tvm.tirx.IntImm("int64", 1)

    gpu = _is_gpu(target)
    act = "float16" if gpu else "float32"
    bias = np.zeros(n, act) if bias is None else np.asarray(bias, act).reshape(n)
    if gpu:
        w, s, mn = pack_rows(qw, act)
        func = kernels.gpu_kernel(n, k, qw.group, act, int(m) if isinstance(m, tvm.tirx.IntImm) else None)
        name = "int4_matmul_gpu"
    else:
        lanes = _cpu_lanes(target)
        w, s, mn = pack_cpu(qw, lanes)
        rows = 1 if isinstance(m, tvm.tirx.IntImm) and int(m) == 1 else 4
        func = kernels.cpu_kernel(n, k, qw.group, lanes, rows)
        name = "int4_gemv_cpu" if rows == 1 else "int4_gemm_cpu"
    gv = bb.add_func(func, name)

    x2 = bb.normalize(relax.op.reshape(x, [m, k]))
    if dtype != act:
        x2 = bb.normalize(relax.op.astype(x2, act))
    if gpu:  # fp32 out of the kernel; the cast and bias are one small elementwise kernel
        args = [x2] + [relax.const(a) for a in (w, s, mn)]
        y = bb.normalize(relax.call_tir(gv, args, relax.TensorType([m, n], "float32")))
        y = bb.normalize(relax.op.add(relax.op.astype(y, act), relax.const(bias)))
    else:
        args = [x2] + [relax.const(a) for a in (w, s, mn, bias)]
        y = bb.normalize(relax.call_tir(gv, args, relax.TensorType([m, n], act)))
    if dtype != act:
        y = bb.normalize(relax.op.astype(y, dtype))
    return relax.op.reshape(y, lead + [n]) if len(lead) != 1 else y
