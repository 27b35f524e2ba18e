"""TIR kernels of the two sparse-conv dataflows over an output-stationary neighbour map.

* ``implicit_gemm`` (fetch-on-demand): each output row walks its K neighbours, fetching input
  rows straight from ``feats``; no intermediate buffers, no write conflicts.
* ``gather_gemm_scatter``: per kernel offset, the (input, output) pairs are compacted
  (``pair_lists``), a tile of input rows is gathered, multiplied by W[a] as a dense GEMM (each
  weight row reused across the tile), and added to the output rows. Offsets run one after the
  other and an output row occurs at most once per offset, so the scatter needs no atomics.

Both accumulate in float32, start from the bias and apply ReLU in the epilogue when asked.
"""

from __future__ import annotations

from tvm.script import tirx as T

from edgec.passes.sparse_conv.kmap import ATTRS, THREADS

TILE = 4  # gathered rows per GEMM tile (CPU): 4 x Cout accumulators stay in vector registers


def implicit_gemm(kvol: int, cin: int, cout: int, dtype: str, relu: bool, gpu: bool, residual: bool = False):
    """feats [n, Cin], nbr [m, K], weight [K, Cin, Cout], bias [Cout], residual [m or 1, Cout] -> out [m, Cout].

    The residual is read (added before the ReLU) only when ``residual`` is set."""
    co_threads = min(THREADS, -(-cout // 32) * 32)
    co_steps = -(-cout // co_threads)

    @T.prim_func(private=True, s_tir=True)
    def sparse_conv_implicit_gemm(f: T.handle, nb: T.handle, w: T.Buffer((kvol, cin, cout), dtype),
                                  b: T.Buffer((cout,), dtype), r: T.handle, o: T.handle):
        T.func_attr(ATTRS)
        n = T.int64()
        m = T.int64()
        F = T.match_buffer(f, (n, cin), dtype)
        NB = T.match_buffer(nb, (m, kvol), "int32")
        mr = T.int64()
        R = T.match_buffer(r, (mr, cout), dtype)
        O = T.match_buffer(o, (m, cout), dtype)
        with T.sblock("root"):
            if gpu:
                for j in T.thread_binding(m, thread="blockIdx.x"):
                    for tx in T.thread_binding(co_threads, thread="threadIdx.x"):
                        acc = T.decl_buffer((1,), "float32", scope="local")
                        for step in range(co_steps):
                            if step * co_threads + tx < cout:
                                acc[0] = T.Cast("float32", b[step * co_threads + tx])
                                if residual:
                                    acc[0] = acc[0] + T.Cast("float32", R[j, step * co_threads + tx])
                                for a in range(kvol):
                                    if NB[j, a] >= 0:
                                        for ci in range(cin):
                                            acc[0] = acc[0] + T.Cast("float32", F[NB[j, a], ci]) * T.Cast(
                                                "float32", w[a, ci, step * co_threads + tx])
                                if relu:
                                    O[j, step * co_threads + tx] = T.Cast(dtype, T.max(acc[0], T.float32(0)))
                                else:
                                    O[j, step * co_threads + tx] = T.Cast(dtype, acc[0])
            else:
                for j in T.parallel(m):
                    acc = T.decl_buffer((cout,), "float32", scope="local")
                    # whole-row vectors: LLVM keeps the accumulator in registers
                    for co in T.vectorized(cout):
                        if residual:
                            acc[co] = T.Cast("float32", b[co]) + T.Cast("float32", R[j, co])
                        else:
                            acc[co] = T.Cast("float32", b[co])
                    for a in range(kvol):
                        if NB[j, a] >= 0:
                            for ci in range(cin):
                                for co in T.vectorized(cout):
                                    acc[co] = acc[co] + T.Cast("float32", F[NB[j, a], ci]) * T.Cast("float32", w[a, ci, co])
                    for co in range(cout):
                        if relu:
                            O[j, co] = T.Cast(dtype, T.max(acc[co], T.float32(0)))
                        else:
                            O[j, co] = T.Cast(dtype, acc[co])

    return sparse_conv_implicit_gemm


def pair_lists(kvol: int, gpu: bool):
    """nbr [m, K] -> per offset a: input rows pin[a, :cnt[a]], output rows pout[a, :cnt[a]], cnt [K]."""

    @T.prim_func(private=True, s_tir=True)
    def sparse_pair_lists(nb: T.handle, pi: T.handle, po: T.handle, cnt: T.Buffer((kvol,), "int32")):
        T.func_attr(ATTRS)
        m = T.int64()
        NB = T.match_buffer(nb, (m, kvol), "int32")
        PI = T.match_buffer(pi, (kvol, m), "int32")
        PO = T.match_buffer(po, (kvol, m), "int32")
        with T.sblock("root"):
            if gpu:
                for bx in T.thread_binding(kvol, thread="blockIdx.x"):
                    for tx in T.thread_binding(1, thread="threadIdx.x"):
                        c = T.decl_buffer((1,), "int32", scope="local")
                        c[0] = 0
                        for j in range(m):
                            if NB[j, bx] >= 0:
                                PI[bx, c[0]] = NB[j, bx]
                                PO[bx, c[0]] = T.Cast("int32", j)
                                c[0] = c[0] + 1
                        cnt[bx] = c[0]
            else:
                for a in T.parallel(kvol):
                    c = T.decl_buffer((1,), "int32", scope="local")
                    c[0] = 0
                    for j in range(m):
                        if NB[j, a] >= 0:
                            PI[a, c[0]] = NB[j, a]
                            PO[a, c[0]] = T.Cast("int32", j)
                            c[0] = c[0] + 1
                    cnt[a] = c[0]

    return sparse_pair_lists


def gather_gemm_scatter(kvol: int, cin: int, cout: int, dtype: str, relu: bool, gpu: bool, residual: bool = False):
    """feats [n, Cin], pin/pout [K, m], cnt [K], weight [K, Cin, Cout], bias, residual -> out [m, Cout]."""
    co_threads = min(THREADS, -(-cout // 32) * 32)
    co_steps = -(-cout // co_threads)

    @T.prim_func(private=True, s_tir=True)
    def sparse_conv_gather_scatter(f: T.handle, pi: T.handle, po: T.handle, cnt: T.Buffer((kvol,), "int32"),
                                   w: T.Buffer((kvol, cin, cout), dtype), b: T.Buffer((cout,), dtype), r: T.handle,
                                   o: T.handle):
        T.func_attr(ATTRS)
        n = T.int64()
        m = T.int64()
        F = T.match_buffer(f, (n, cin), dtype)
        PI = T.match_buffer(pi, (kvol, m), "int32")
        PO = T.match_buffer(po, (kvol, m), "int32")
        mr = T.int64()
        R = T.match_buffer(r, (mr, cout), dtype)
        O = T.match_buffer(o, (m, cout), dtype)
        with T.sblock("root"):
            if gpu:
                for bj in T.thread_binding(m, thread="blockIdx.x"):
                    for tx in T.thread_binding(co_threads, thread="threadIdx.x"):
                        for step in range(co_steps):
                            if step * co_threads + tx < cout:
                                if residual:
                                    O[bj, step * co_threads + tx] = b[step * co_threads + tx] + R[bj, step * co_threads + tx]
                                else:
                                    O[bj, step * co_threads + tx] = b[step * co_threads + tx]
                # one launch per offset: within an offset each output row is written once
                for a in range(kvol):
                    for p in T.thread_binding(m, thread="blockIdx.x"):
                        for tx in T.thread_binding(co_threads, thread="threadIdx.x"):
                            acc = T.decl_buffer((1,), "float32", scope="local")
                            for step in range(co_steps):
                                if T.Cast("int32", p) < cnt[a] and step * co_threads + tx < cout:
                                    acc[0] = T.float32(0)
                                    for ci in range(cin):
                                        acc[0] = acc[0] + T.Cast("float32", F[PI[a, p], ci]) * T.Cast(
                                            "float32", w[a, ci, step * co_threads + tx])
                                    O[PO[a, p], step * co_threads + tx] = O[PO[a, p], step * co_threads + tx] + T.Cast(
                                        dtype, acc[0])
                if relu:
                    for bj in T.thread_binding(m, thread="blockIdx.x"):
                        for tx in T.thread_binding(co_threads, thread="threadIdx.x"):
                            for step in range(co_steps):
                                if step * co_threads + tx < cout:
                                    O[bj, step * co_threads + tx] = T.max(O[bj, step * co_threads + tx], T.Cast(dtype, 0))
            else:
                for j in T.parallel(m):
                    for co in range(cout):
                        if residual:
                            O[j, co] = b[co] + R[j, co]
                        else:
                            O[j, co] = b[co]
                for a in range(kvol):
                    # one GEMM tile: TILE gathered rows x Cout, each weight vector loaded once per tile
                    for t in T.parallel(T.ceildiv(m, T.int64(TILE))):
                        if T.Cast("int32", t * T.int64(TILE)) < cnt[a]:
                            acc = T.decl_buffer((TILE, cout), "float32", scope="local")
                            for r in T.unroll(TILE):
                                for co in T.vectorized(cout):
                                    acc[r, co] = T.float32(0)
                            for ci in range(cin):
                                for r in T.unroll(TILE):
                                    for co in T.vectorized(cout):
                                        # rows past the count recompute the last pair and are dropped
                                        acc[r, co] = acc[r, co] + T.Cast("float32", F[PI[a, T.min(
                                            t * T.int64(TILE) + T.int64(r), T.Cast("int64", cnt[a]) - T.int64(1))], ci]
                                        ) * T.Cast("float32", w[a, ci, co])
                            for r in T.unroll(TILE):
                                if T.Cast("int32", t * T.int64(TILE) + T.int64(r)) < cnt[a]:
                                    for co in T.vectorized(cout):
                                        O[PO[a, t * T.int64(TILE) + T.int64(r)], co] = O[
                                            PO[a, t * T.int64(TILE) + T.int64(r)], co] + T.Cast(dtype, acc[r, co])
                if relu:
                    for j in T.parallel(m):
                        for co in range(cout):
                            O[j, co] = T.max(O[j, co], T.Cast(dtype, 0))

    return sparse_conv_gather_scatter
