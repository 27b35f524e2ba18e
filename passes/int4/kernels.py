"""TIR kernels for ``Y[M, N] = X[M, K] · dequant(W)ᵀ (+ bias)`` on packed int4 weights.

CPU: hand-scheduled (parallel over blocks of ``lanes`` outputs, vectorized over those outputs,
tiles of ``rows`` rows of X in turn so each weight byte is unpacked once per tile) and
marked ``tirx.is_scheduled`` so the default rules leave it alone. Within a group the kernel
accumulates ``Σ x·q`` and ``Σ x`` (even and odd k apart) and applies ``scale`` and ``min`` once per group: one fused
multiply-add per weight, and the dequantized weight never exists, not even in a register.
GPU: one reduction block that dequantizes its weight operand on the fly into an fp32 output,
left to DLight (its GEMV rule schedules M = 1; larger M gets its fallback schedule).
"""

from __future__ import annotations

from tvm.script import tirx as T


def cpu_kernel(n: int, k: int, group: int, lanes: int, rows: int):
    """A kernel for any M (symbolic); ``rows`` = 1 gives the GEMV."""
    n_blocks = -(-n // lanes)
    n_pad = n_blocks * lanes
    k_groups = k // group
    half = group // 2

    # s_tir: a root block, like every other kernel, for passes that walk kernels' blocks
    @T.prim_func(private=True, s_tir=True)
    def int4_matmul_cpu(
        x: T.handle,
        w: T.Buffer((n_blocks, k // 2, lanes), "uint8"),
        s: T.Buffer((k_groups, n_pad), "float32"),
        mn: T.Buffer((k_groups, n_pad), "float32"),
        bias: T.Buffer((n,), "float32"),
        y: T.handle,
    ):
        # opaque: already scheduled, and FuseTIR cannot merge a kernel without blocks
        T.func_attr({"tirx.is_scheduled": True, "tirx.noalias": True, "op_pattern": 8})
        m = T.int64()
        X = T.match_buffer(x, (m, k), "float32")
        Y = T.match_buffer(y, (m, n), "float32")
        with T.sblock("root"):
            # one task per block of outputs, its row tiles in turn: the task's slice of the
            # weight (K/2 x lanes bytes) is streamed from memory once and then hit in cache
            for nb in T.parallel(T.int64(n_blocks)):
                for mt in range(T.ceildiv(m, T.int64(rows))):
                    m0 = mt * T.int64(rows)
                    acc = T.decl_buffer((rows, lanes), "float32", scope="local")
                    # even and odd k accumulate apart: two short FMA chains instead of one long one
                    acc_even = T.decl_buffer((rows, lanes), "float32", scope="local")
                    acc_odd = T.decl_buffer((rows, lanes), "float32", scope="local")
                    xs_even = T.decl_buffer((rows,), "float32", scope="local")
                    xs_odd = T.decl_buffer((rows,), "float32", scope="local")
                    for r in T.unroll(rows):
                        for j in T.vectorized(lanes):
                            acc[r, j] = T.float32(0)
                    for g in range(k_groups):
                        for r in T.unroll(rows):
                            xs_even[r] = T.float32(0)
                            xs_odd[r] = T.float32(0)
                            for j in T.vectorized(lanes):
                                acc_even[r, j] = T.float32(0)
                                acc_odd[r, j] = T.float32(0)
                        for kk in range(half):
                            for r in T.unroll(rows):
                                row = T.min(m0 + T.int64(r), m - T.int64(1))
                                x0 = X[row, g * group + kk * 2]
                                x1 = X[row, g * group + kk * 2 + 1]
                                xs_even[r] = xs_even[r] + x0
                                xs_odd[r] = xs_odd[r] + x1
                                for j in T.vectorized(lanes):
                                    # no let-bound byte: the vectorizer keeps such a let scalar
                                    acc_even[r, j] = acc_even[r, j] + x0 * T.Cast(
                                        "float32", w[nb, g * half + kk, j] & T.uint8(15))
                                    acc_odd[r, j] = acc_odd[r, j] + x1 * T.Cast(
                                        "float32", w[nb, g * half + kk, j] >> T.uint8(4))
                        for r in T.unroll(rows):
                            for j in T.vectorized(lanes):
                                acc[r, j] = (acc[r, j] + s[g, nb * T.int64(lanes) + T.int64(j)]
                                             * (acc_even[r, j] + acc_odd[r, j])
                                             + mn[g, nb * T.int64(lanes) + T.int64(j)] * (xs_even[r] + xs_odd[r]))
                    for r in T.unroll(rows):
                        for j in range(lanes):
                            if m0 + T.int64(r) < m and nb * T.int64(lanes) + T.int64(j) < T.int64(n):
                                Y[m0 + T.int64(r), nb * T.int64(lanes) + T.int64(j)] = (
                                    acc[r, j] + bias[nb * T.int64(lanes) + T.int64(j)])

    return int4_matmul_cpu


def gpu_kernel(n: int, k: int, group: int, dtype: str, m: int | None = None):
    """One reduction block over the weight dequantized on the fly, accumulating into an fp32
    output (the cast and bias follow as a separate kernel: DLight's GEMV rule fails on a
    cast epilogue over a block-allocated accumulator)."""
    # int64 throughout, as Relax's shapes: DLight's layout transforms reject mixed index types
    n, k, k_groups, half = T.int64(n), T.int64(k), T.int64(k // group), T.int64(k // 2)
    group = T.int64(group)

    @T.prim_func(private=True, s_tir=True)
    def int4_matmul_gpu(
        x: T.handle,
        w: T.Buffer((n, half), "uint8"),
        s: T.Buffer((n, k_groups), dtype),
        mn: T.Buffer((n, k_groups), dtype),
        y: T.handle,
    ):
        # opaque: FuseOps must not give it back the epilogue
        T.func_attr({"tirx.noalias": True, "op_pattern": 8})
        m = T.int64()
        X = T.match_buffer(x, (m, k), dtype)
        Y = T.match_buffer(y, (m, n), "float32")
        for i, j, r in T.grid(m, n, k):
            with T.sblock("matmul"):
                vi, vj, vr = T.axis.remap("SSR", [i, j, r])
                with T.init():
                    Y[vi, vj] = T.float32(0)
                Y[vi, vj] = Y[vi, vj] + T.Cast("float32", X[vi, vr]) * T.Cast("float32", (
                    T.Cast(dtype, (w[vj, vr // T.int64(2)] >> T.Cast("uint8", vr % T.int64(2) * T.int64(4)))
                           & T.uint8(15)) * s[vj, vr // group] + mn[vj, vr // group]))

    if m is None:
        return int4_matmul_gpu
    # a static M lets DLight pick its GEMV rule for M = 1
    from tvm import tirx

    x_param, y_param = int4_matmul_gpu.params[0], int4_matmul_gpu.params[-1]
    return int4_matmul_gpu.specialize({
        x_param: tirx.decl_buffer((T.int64(m), k), dtype, "X"),
        y_param: tirx.decl_buffer((T.int64(m), n), "float32", "Y"),
    })
