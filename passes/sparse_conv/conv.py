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


def cpu_tiles(cout: int, budget: int = 24) -> tuple[int, int, int]:
    """(rows, channel block, lanes) of a CPU register tile: vectors of ``lanes`` channels (16 where
    Cout allows: odd widths such as 48 make LLVM shuffle), a block of them that divides Cout (at
    most 64 channels), and as many rows as keep about ``budget`` vector accumulators live."""
    if cout % 16 == 0:
        lanes = 16
    elif cout <= 16:
        lanes = cout
    else:
        lanes = next(d for d in (8, 4, 2, 1) if cout % d == 0)
    block = max(d for d in range(lanes, min(cout, 64) + 1, lanes) if cout % d == 0)
    vectors = block // lanes
    return max(1, min(8, budget // vectors)), block, lanes


def implicit_gemm_cpu(kvol: int, cin: int, cout: int, dtype: str, relu: bool, residual: bool):
    """Implicit GEMM on a CPU, register-blocked: a tile of R output rows x a block of channels.
    For an offset where every row of the tile has a neighbour, each weight vector is loaded once
    and used for all R rows; otherwise the rows that have one go row by row."""
    rows, block, lanes = cpu_tiles(cout, budget=12)
    blocks, vecs = cout // block, block // lanes

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
            for t in T.parallel(T.ceildiv(m, T.int64(rows))):
                row = T.decl_buffer((rows,), "int64", scope="local")
                src = T.decl_buffer((rows,), "int64", scope="local")
                hit = T.decl_buffer((rows,), "int32", scope="local")
                anyhit = T.decl_buffer((1,), "int32", scope="local")
                acc = T.decl_buffer((rows, block), "float32", scope="local")
                for q in T.unroll(rows):
                    row[q] = T.min(t * T.int64(rows) + T.int64(q), m - T.int64(1))
                for cb in range(blocks):
                    for q in T.unroll(rows):
                        for v in T.unroll(vecs):
                            for c in T.vectorized(lanes):
                                if residual:
                                    acc[q, v * lanes + c] = T.Cast("float32", b[cb * block + v * lanes + c]) + T.Cast(
                                        "float32", R[row[q], cb * block + v * lanes + c])
                                else:
                                    acc[q, v * lanes + c] = T.Cast("float32", b[cb * block + v * lanes + c])
                    for a in range(kvol):
                        anyhit[0] = 0
                        for q in T.unroll(rows):
                            hit[q] = T.Cast("int32", NB[row[q], a] >= 0)
                            src[q] = T.Cast("int64", T.max(NB[row[q], a], 0))
                            anyhit[0] = anyhit[0] + hit[q]
                        if anyhit[0] == rows:  # the whole tile: each weight vector serves R rows
                            for ci in range(cin):
                                for q in T.unroll(rows):
                                    for v in T.unroll(vecs):
                                        for c in T.vectorized(lanes):
                                            acc[q, v * lanes + c] = acc[q, v * lanes + c] + T.Cast(
                                                "float32", F[src[q], ci]) * T.Cast("float32", w[a, ci, cb * block + v * lanes + c])
                        elif anyhit[0] > 0:  # some rows: row by row, no work for the others
                            for q in T.unroll(rows):
                                if hit[q] != 0:
                                    for ci in range(cin):
                                        for v in T.unroll(vecs):
                                            for c in T.vectorized(lanes):
                                                acc[q, v * lanes + c] = acc[q, v * lanes + c] + T.Cast(
                                                    "float32", F[src[q], ci]) * T.Cast(
                                                        "float32", w[a, ci, cb * block + v * lanes + c])
                    for q in T.unroll(rows):
                        if t * T.int64(rows) + T.int64(q) < m:
                            for v in T.unroll(vecs):
                                for c in T.vectorized(lanes):
                                    if relu:
                                        O[row[q], cb * block + v * lanes + c] = T.Cast(
                                            dtype, T.max(acc[q, v * lanes + c], T.float32(0)))
                                    else:
                                        O[row[q], cb * block + v * lanes + c] = T.Cast(dtype, acc[q, v * lanes + c])

    return sparse_conv_implicit_gemm


def gather_gemm_scatter_cpu(kvol: int, cin: int, cout: int, dtype: str, relu: bool, residual: bool):
    """Gather-GEMM-scatter on a CPU: per offset, tiles of R gathered rows x a channel block, each
    weight vector loaded once per tile, added to the tile's output rows."""
    rows, block, lanes = cpu_tiles(cout)
    blocks, vecs = cout // block, block // lanes

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
            for j in T.parallel(m):
                for c in range(cout):
                    if residual:
                        O[j, c] = b[c] + R[j, c]
                    else:
                        O[j, c] = b[c]
            for a in range(kvol):
                for t in T.parallel(T.ceildiv(m, T.int64(rows))):
                    if T.Cast("int32", t * T.int64(rows)) < cnt[a]:
                        src = T.decl_buffer((rows,), "int64", scope="local")
                        dst = T.decl_buffer((rows,), "int64", scope="local")
                        acc = T.decl_buffer((rows, block), "float32", scope="local")
                        for q in T.unroll(rows):
                            # rows past the count recompute the last pair and are dropped
                            src[q] = T.Cast("int64", PI[a, T.min(t * T.int64(rows) + T.int64(q),
                                                                 T.Cast("int64", cnt[a]) - T.int64(1))])
                            dst[q] = T.Cast("int64", PO[a, T.min(t * T.int64(rows) + T.int64(q),
                                                                 T.Cast("int64", cnt[a]) - T.int64(1))])
                        for cb in range(blocks):
                            for q in T.unroll(rows):
                                for v in T.unroll(vecs):
                                    for c in T.vectorized(lanes):
                                        acc[q, v * lanes + c] = T.float32(0)
                            for ci in range(cin):
                                for q in T.unroll(rows):
                                    for v in T.unroll(vecs):
                                        for c in T.vectorized(lanes):
                                            acc[q, v * lanes + c] = acc[q, v * lanes + c] + T.Cast(
                                                "float32", F[src[q], ci]) * T.Cast("float32", w[a, ci, cb * block + v * lanes + c])
                            for q in T.unroll(rows):
                                if T.Cast("int32", t * T.int64(rows) + T.int64(q)) < cnt[a]:
                                    for v in T.unroll(vecs):
                                        for c in T.vectorized(lanes):
                                            O[dst[q], cb * block + v * lanes + c] = O[
                                                dst[q], cb * block + v * lanes + c] + T.Cast(dtype, acc[q, v * lanes + c])
            if relu:
                for j in T.parallel(m):
                    for c in range(cout):
                        O[j, c] = T.max(O[j, c], T.Cast(dtype, 0))

    return sparse_conv_gather_scatter
