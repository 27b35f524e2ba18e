"""TIR kernels that build and query kernel maps over sorted keys: coordinate keys, lookups by
binary search (GPUs) or by merging sorted lists (CPUs), and a strided conv's output sites.

A coordinate (batch, x, y, z) packs into one int64 key ``b<<48 | x<<32 | y<<16 | z`` (each field in
[0, 65536)), so numeric key order is lexicographic coordinate order. A tensor's keys are sorted
once (``relax.op.argsort``: TIR on GPUs). Sorted keys need no atomics on a GPU and give strided
convs their sorted, unique output sites; ``hashmap.py`` holds the CPU hash-table alternatives.

The neighbour map ``nbr[m, K]`` is output-stationary: for output site j and kernel offset a, the
one input row that feeds it, or -1. Every conv variant has at most one such row:

* forward (subm and strided): ``p = q·stride − padding + a·dilation``
* inverse: ``p = (q + padding − a·dilation) / stride`` when that divides exactly.

CPU kernels are hand-scheduled (``T.parallel``); with ``gpu=True`` the same bodies bind to CUDA
threads. Every kernel is marked scheduled and opaque, so the default rules and FuseOps leave it be.
"""

from __future__ import annotations

import itertools

from tvm.script import tirx as T

SENTINEL = (1 << 63) - 1  # sorts after every real key
EMPTY = -1  # a free hash-table slot (real keys are >= 0)
FIELD = 1 << 16
THREADS = 256
ATTRS = {"tirx.is_scheduled": True, "tirx.noalias": True, "op_pattern": 8}


def hash_slot(key, cap):
    """Multiplicative hash of an int64 key onto [0, cap) (unsigned: no signed-overflow UB)."""
    mixed = (T.Cast("uint64", key) * T.uint64(0x5851F42D4C957F2D)) >> T.uint64(32)
    return T.Cast("int64", (mixed * T.Cast("uint64", cap)) >> T.uint64(32))


def offsets(kernel_size):
    """Kernel offsets a in (x, y, z) row-major order: the order of a [Kx, Ky, Kz, ...] weight."""
    return list(itertools.product(*(range(k) for k in kernel_size)))


def pack_keys(max_points: int, gpu: bool):
    """coords [n, 4] int32 -> keys [n] int64. Refuses N above ``max_points`` (host side) and, on
    CPUs, coordinates outside [0, 65536) (a GPU kernel cannot raise)."""

    @T.macro(hygienic=False)
    def key(i):
        K[i] = (T.Cast("int64", C[i, 0]) * T.int64(1 << 48) + T.Cast("int64", C[i, 1]) * T.int64(1 << 32)
                + T.Cast("int64", C[i, 2]) * T.int64(1 << 16) + T.Cast("int64", C[i, 3]))

    @T.prim_func(private=True, s_tir=True)
    def sparse_pack_keys(c: T.handle, k: T.handle):
        T.func_attr(ATTRS)
        n = T.int64()
        C = T.match_buffer(c, (n, 4), "int32")
        K = T.match_buffer(k, (n,), "int64")
        assert n <= T.int64(max_points), "sparse input: more points than the declared maximum"

        with T.sblock("root"):
            if gpu:
                for bx in T.thread_binding(T.ceildiv(n, T.int64(THREADS)), thread="blockIdx.x"):
                    for tx in T.thread_binding(T.int64(THREADS), thread="threadIdx.x"):
                        if bx * T.int64(THREADS) + tx < n:
                            key(bx * T.int64(THREADS) + tx)
            else:
                for i in range(n):
                    for t in range(4):
                        assert C[i, t] >= 0, "sparse input: coordinates must be non-negative"
                        assert C[i, t] < FIELD, "sparse input: coordinates must be below 65536"
                    # the batch field is the key's top: it must keep the int64 key non-negative
                    assert C[i, 0] < FIELD // 2, "sparse input: batch index must be below 32768"
                    key(i)

    return sparse_pack_keys


def sorted_keys(gpu: bool, check: bool = True):
    """keys [n], order [n] -> sorted keys [n]; on CPUs (with ``check``) also refuses duplicate
    coordinates."""

    @T.prim_func(private=True, s_tir=True)
    def sparse_sorted_keys(k: T.handle, o: T.handle, s: T.handle):
        T.func_attr(ATTRS)
        n = T.int64()
        K = T.match_buffer(k, (n,), "int64")
        O = T.match_buffer(o, (n,), "int32")
        S = T.match_buffer(s, (n,), "int64")
        with T.sblock("root"):
            if gpu:
                for bx in T.thread_binding(T.ceildiv(n, T.int64(THREADS)), thread="blockIdx.x"):
                    for tx in T.thread_binding(T.int64(THREADS), thread="threadIdx.x"):
                        if bx * T.int64(THREADS) + tx < n:
                            S[bx * T.int64(THREADS) + tx] = K[O[bx * T.int64(THREADS) + tx]]
            else:
                for i in range(n):
                    S[i] = K[O[i]]
                    if check:
                        if i > T.int64(0):
                            assert S[i] != S[i - T.int64(1)], "sparse input: duplicate coordinates"

    return sparse_sorted_keys


def neighbor_map(kvol: int, stride, pad, dil, inverse: bool, gpu: bool, hashed: bool = False):
    """out coords [m, 4], offsets [K, 3], index -> nbr [m, K] int32. The index is the sorted keys
    [n] and their order [n], or with ``hashed`` a hash table's keys [cap] and rows [cap]
    (``hashmap.build``): O(1) probes instead of a binary search, for CPUs."""
    sx, sy, sz = stride
    px, py, pz = pad
    dx, dy, dz = dil

    @T.macro(hygienic=False)
    def lookup(j, inverse, hashed, sx, sy, sz, px, py, pz, dx, dy, dz):
        lo = T.decl_buffer((1,), "int64", scope="local")
        hi = T.decl_buffer((1,), "int64", scope="local")
        src = T.decl_buffer((3,), "int32", scope="local")
        ok = T.decl_buffer((1,), "int32", scope="local")
        for a in range(kvol):
            ok[0] = 1
            if inverse:
                for t in range(3):
                    num = Q[j, t + 1] + T.Select(t == 0, px, T.Select(t == 1, py, pz)) - offs[a, t] * T.Select(
                        t == 0, dx, T.Select(t == 1, dy, dz))
                    st = T.Select(t == 0, sx, T.Select(t == 1, sy, sz))
                    src[t] = T.floordiv(num, st)
                    if T.floormod(num, st) != 0:
                        ok[0] = 0
            else:
                for t in range(3):
                    src[t] = Q[j, t + 1] * T.Select(t == 0, sx, T.Select(t == 1, sy, sz)) - T.Select(
                        t == 0, px, T.Select(t == 1, py, pz)) + offs[a, t] * T.Select(t == 0, dx, T.Select(t == 1, dy, dz))
            for t in range(3):
                if src[t] < 0 or src[t] >= FIELD:
                    ok[0] = 0
            NB[j, a] = -1
            if ok[0] == 1:
                if hashed:
                    lo[0] = hash_slot(T.Cast("int64", Q[j, 0]) * T.int64(1 << 48) + T.Cast("int64", src[0]) * T.int64(1 << 32)
                                      + T.Cast("int64", src[1]) * T.int64(1 << 16) + T.Cast("int64", src[2]), n)
                    while SK[lo[0]] != T.int64(-1) and SK[lo[0]] != (
                            T.Cast("int64", Q[j, 0]) * T.int64(1 << 48) + T.Cast("int64", src[0]) * T.int64(1 << 32)
                            + T.Cast("int64", src[1]) * T.int64(1 << 16) + T.Cast("int64", src[2])):
                        lo[0] = T.if_then_else(lo[0] + T.int64(1) == n, T.int64(0), lo[0] + T.int64(1))
                    if SK[lo[0]] != T.int64(-1):
                        NB[j, a] = Ord[lo[0]]
                else:
                    lo[0] = T.int64(0)
                    hi[0] = n
                    while lo[0] < hi[0]:
                        if SK[(lo[0] + hi[0]) // T.int64(2)] < (
                                T.Cast("int64", Q[j, 0]) * T.int64(1 << 48) + T.Cast("int64", src[0]) * T.int64(1 << 32)
                                + T.Cast("int64", src[1]) * T.int64(1 << 16) + T.Cast("int64", src[2])):
                            lo[0] = (lo[0] + hi[0]) // T.int64(2) + T.int64(1)
                        else:
                            hi[0] = (lo[0] + hi[0]) // T.int64(2)
                    if lo[0] < n:
                        if SK[lo[0]] == (T.Cast("int64", Q[j, 0]) * T.int64(1 << 48) + T.Cast("int64", src[0]) * T.int64(1 << 32)
                                         + T.Cast("int64", src[1]) * T.int64(1 << 16) + T.Cast("int64", src[2])):
                            NB[j, a] = Ord[lo[0]]

    @T.prim_func(private=True, s_tir=True)
    def sparse_neighbor_map(q: T.handle, offs: T.Buffer((kvol, 3), "int32"), sk: T.handle, o: T.handle,
                            nb: T.handle):
        T.func_attr(ATTRS)
        m = T.int64()
        n = T.int64()
        Q = T.match_buffer(q, (m, 4), "int32")
        SK = T.match_buffer(sk, (n,), "int64")
        Ord = T.match_buffer(o, (n,), "int32")
        NB = T.match_buffer(nb, (m, kvol), "int32")

        with T.sblock("root"):
            if gpu:
                for bx in T.thread_binding(T.ceildiv(m, T.int64(THREADS)), thread="blockIdx.x"):
                    for tx in T.thread_binding(T.int64(THREADS), thread="threadIdx.x"):
                        if bx * T.int64(THREADS) + tx < m:
                            lookup(bx * T.int64(THREADS) + tx, inverse, hashed, sx, sy, sz, px, py, pz, dx, dy, dz)
            else:
                for j in T.parallel(m):
                    lookup(j, inverse, hashed, sx, sy, sz, px, py, pz, dx, dy, dz)

    return sparse_neighbor_map


def candidates(kvol: int, stride, pad, dil, extent, gpu: bool):
    """coords [n, 4], offsets [K, 3] -> output-site keys [n*K] int64 of a strided conv (SENTINEL
    where offset a maps input i to no output site). ``extent`` bounds the sites, or is None."""
    sx, sy, sz = stride
    px, py, pz = pad
    dx, dy, dz = dil
    ex, ey, ez = extent or (FIELD, FIELD, FIELD)

    @T.macro(hygienic=False)
    def sites(i, sx, sy, sz, px, py, pz, dx, dy, dz, ex, ey, ez):
        dst = T.decl_buffer((3,), "int32", scope="local")
        ok = T.decl_buffer((1,), "int32", scope="local")
        for a in range(kvol):
            ok[0] = 1
            for t in range(3):
                num = C[i, t + 1] + T.Select(t == 0, px, T.Select(t == 1, py, pz)) - offs[a, t] * T.Select(
                    t == 0, dx, T.Select(t == 1, dy, dz))
                st = T.Select(t == 0, sx, T.Select(t == 1, sy, sz))
                dst[t] = T.floordiv(num, st)
                if T.floormod(num, st) != 0 or num < 0 or dst[t] >= T.Select(t == 0, ex, T.Select(t == 1, ey, ez)):
                    ok[0] = 0
            if ok[0] == 1:
                K[i * kvol + a] = (T.Cast("int64", C[i, 0]) * T.int64(1 << 48) + T.Cast("int64", dst[0]) * T.int64(1 << 32)
                                   + T.Cast("int64", dst[1]) * T.int64(1 << 16) + T.Cast("int64", dst[2]))
            else:
                K[i * kvol + a] = T.int64(SENTINEL)

    @T.prim_func(private=True, s_tir=True)
    def sparse_out_candidates(c: T.handle, tok: T.handle, offs: T.Buffer((kvol, 3), "int32"), k: T.handle):
        T.func_attr(ATTRS)
        n = T.int64()
        C = T.match_buffer(c, (n, 4), "int32")
        nt = T.int64()
        # the coordinates' checked index: passed so that its checks run first and are not dead code
        T.match_buffer(tok, (nt,), "int64")
        K = T.match_buffer(k, (n * kvol,), "int64")

        with T.sblock("root"):
            if gpu:
                for bx in T.thread_binding(T.ceildiv(n, T.int64(THREADS)), thread="blockIdx.x"):
                    for tx in T.thread_binding(T.int64(THREADS), thread="threadIdx.x"):
                        if bx * T.int64(THREADS) + tx < n:
                            sites(bx * T.int64(THREADS) + tx, sx, sy, sz, px, py, pz, dx, dy, dz, ex, ey, ez)
            else:
                for i in T.parallel(n):
                    sites(i, sx, sy, sz, px, py, pz, dx, dy, dz, ex, ey, ez)

    return sparse_out_candidates


def unique_sorted(gpu: bool):
    """sorted keys [L] -> unique keys [L] (first ``count`` valid) and count [1] int64.

    One sequential pass: O(L) and cheap next to the conv; on a GPU it runs on one thread."""

    @T.macro(hygienic=False)
    def walk():
        c = T.decl_buffer((1,), "int64", scope="local")
        c[0] = T.int64(0)
        for i in range(L):
            if S[i] != T.int64(SENTINEL):
                if i == T.int64(0) or S[i] != S[i - T.int64(1)]:
                    U[c[0]] = S[i]
                    c[0] = c[0] + T.int64(1)
        cnt[0] = c[0]

    @T.prim_func(private=True, s_tir=True)
    def sparse_unique(s: T.handle, u: T.handle, cnt: T.Buffer((1,), "int64")):
        T.func_attr(ATTRS)
        L = T.int64()
        S = T.match_buffer(s, (L,), "int64")
        U = T.match_buffer(u, (L,), "int64")

        with T.sblock("root"):
            if gpu:
                for bx in T.thread_binding(1, thread="blockIdx.x"):
                    for tx in T.thread_binding(1, thread="threadIdx.x"):
                        walk()
            else:
                walk()

    return sparse_unique


def decode_keys(gpu: bool):
    """keys [L] (first m used) -> coords [m, 4] int32."""

    @T.macro(hygienic=False)
    def decode(j):
        C[j, 0] = T.Cast("int32", U[j] >> T.int64(48))
        C[j, 1] = T.Cast("int32", (U[j] >> T.int64(32)) & T.int64(FIELD - 1))
        C[j, 2] = T.Cast("int32", (U[j] >> T.int64(16)) & T.int64(FIELD - 1))
        C[j, 3] = T.Cast("int32", U[j] & T.int64(FIELD - 1))

    @T.prim_func(private=True, s_tir=True)
    def sparse_decode(u: T.handle, c: T.handle):
        T.func_attr(ATTRS)
        L = T.int64()
        m = T.int64()
        U = T.match_buffer(u, (L,), "int64")
        C = T.match_buffer(c, (m, 4), "int32")

        with T.sblock("root"):
            if gpu:
                for bx in T.thread_binding(T.ceildiv(m, T.int64(THREADS)), thread="blockIdx.x"):
                    for tx in T.thread_binding(T.int64(THREADS), thread="threadIdx.x"):
                        if bx * T.int64(THREADS) + tx < m:
                            decode(bx * T.int64(THREADS) + tx)
            else:
                for j in T.parallel(m):
                    decode(j)

    return sparse_decode


def neighbor_map_merge(kvol: int, stride, pad, dil, inverse: bool, identity_order: bool, subm: bool = False):
    """CPU neighbour map by merging sorted lists: query keys [m] (sorted) and their rows [m],
    offsets, sorted input keys [n] and order [n] -> nbr [m, K].

    A translation (and a positive per-axis scale, or an exact division) keeps lexicographic order,
    so for each offset the source keys of sorted queries are sorted too: one cursor per offset
    moves forward through the input keys by galloping (1, 2, 4, ... then a binary search), and the
    lookups touch memory in order. Parallel over chunks of queries. With ``identity_order`` the
    query rows are 0..m-1 (a strided conv's sorted output) and the rows argument is ignored.
    ``subm``: queries and inputs are the same tensor, so the map is symmetric — only the first
    half of the offsets is searched, each hit also fills its mirror, and the centre is the row itself.
    """
    sx, sy, sz = stride
    px, py, pz = pad
    dx, dy, dz = dil
    chunk = 512
    searched = kvol // 2 if subm else kvol

    @T.prim_func(private=True, s_tir=True)
    def sparse_neighbor_merge(qk: T.handle, qo: T.handle, offs: T.Buffer((kvol, 3), "int32"), sk: T.handle,
                              o: T.handle, nb: T.handle):
        T.func_attr(ATTRS)
        m = T.int64()
        mo = T.int64()
        n = T.int64()
        QK = T.match_buffer(qk, (m,), "int64")
        QO = T.match_buffer(qo, (mo,), "int32")
        SK = T.match_buffer(sk, (n,), "int64")
        Ord = T.match_buffer(o, (n,), "int32")
        NB = T.match_buffer(nb, (m, kvol), "int32")
        with T.sblock("root"):
            for j in T.parallel(m):
                for a in range(kvol):
                    NB[j, a] = -1
            for c in T.parallel(T.ceildiv(m, T.int64(chunk))):
                pos = T.decl_buffer((kvol,), "int64", scope="local")
                q = T.decl_buffer((4,), "int32", scope="local")
                src = T.decl_buffer((3,), "int32", scope="local")
                key = T.decl_buffer((1,), "int64", scope="local")
                lo = T.decl_buffer((1,), "int64", scope="local")
                hi = T.decl_buffer((1,), "int64", scope="local")
                step = T.decl_buffer((1,), "int64", scope="local")
                ok = T.decl_buffer((1,), "int32", scope="local")
                row = T.decl_buffer((1,), "int64", scope="local")
                for a in range(kvol):
                    pos[a] = T.int64(0)
                for r in range(chunk):
                    if c * T.int64(chunk) + T.int64(r) < m:
                        if identity_order:
                            row[0] = c * T.int64(chunk) + T.int64(r)
                        else:
                            row[0] = T.Cast("int64", QO[c * T.int64(chunk) + T.int64(r)])
                        q[0] = T.Cast("int32", QK[c * T.int64(chunk) + T.int64(r)] >> T.int64(48))
                        q[1] = T.Cast("int32", (QK[c * T.int64(chunk) + T.int64(r)] >> T.int64(32)) & T.int64(FIELD - 1))
                        q[2] = T.Cast("int32", (QK[c * T.int64(chunk) + T.int64(r)] >> T.int64(16)) & T.int64(FIELD - 1))
                        q[3] = T.Cast("int32", QK[c * T.int64(chunk) + T.int64(r)] & T.int64(FIELD - 1))
                        if subm:
                            NB[row[0], searched] = T.Cast("int32", row[0])
                        for a in range(searched):
                            ok[0] = 1
                            for t in T.unroll(3):
                                if inverse:
                                    src[t] = T.floordiv(q[t + 1] + T.Select(t == 0, px, T.Select(t == 1, py, pz)) - offs[a, t]
                                                        * T.Select(t == 0, dx, T.Select(t == 1, dy, dz)),
                                                        T.Select(t == 0, sx, T.Select(t == 1, sy, sz)))
                                    if T.floormod(q[t + 1] + T.Select(t == 0, px, T.Select(t == 1, py, pz)) - offs[a, t]
                                                  * T.Select(t == 0, dx, T.Select(t == 1, dy, dz)),
                                                  T.Select(t == 0, sx, T.Select(t == 1, sy, sz))) != 0:
                                        ok[0] = 0
                                else:
                                    src[t] = q[t + 1] * T.Select(t == 0, sx, T.Select(t == 1, sy, sz)) - T.Select(
                                        t == 0, px, T.Select(t == 1, py, pz)) + offs[a, t] * T.Select(t == 0, dx, T.Select(t == 1, dy, dz))
                                if src[t] < 0 or src[t] >= FIELD:
                                    ok[0] = 0
                            if ok[0] == 1:
                                key[0] = (T.Cast("int64", q[0]) * T.int64(1 << 48) + T.Cast("int64", src[0]) * T.int64(1 << 32)
                                          + T.Cast("int64", src[1]) * T.int64(1 << 16) + T.Cast("int64", src[2]))
                                # gallop from the cursor: the first key >= key[0] lies in (lo, hi]
                                lo[0] = pos[a] - T.int64(1)
                                step[0] = T.int64(1)
                                hi[0] = T.min(lo[0] + step[0], n)
                                while hi[0] < n and SK[T.min(hi[0], n - T.int64(1))] < key[0]:
                                    lo[0] = hi[0]
                                    step[0] = step[0] * T.int64(2)
                                    hi[0] = T.min(lo[0] + step[0], n)
                                lo[0] = lo[0] + T.int64(1)
                                while lo[0] < hi[0]:
                                    if SK[(lo[0] + hi[0]) // T.int64(2)] < key[0]:
                                        lo[0] = (lo[0] + hi[0]) // T.int64(2) + T.int64(1)
                                    else:
                                        hi[0] = (lo[0] + hi[0]) // T.int64(2)
                                pos[a] = lo[0]
                                if lo[0] < n:
                                    if SK[lo[0]] == key[0]:
                                        NB[row[0], a] = Ord[lo[0]]
                                        if subm:
                                            NB[T.Cast("int64", Ord[lo[0]]), kvol - 1 - a] = T.Cast("int32", row[0])

    return sparse_neighbor_merge


def radix_argsort():
    """CPU: keys [n] (non-negative int64) -> their stable ascending order [n] int32.

    LSD radix sort in four 16-bit passes; a pass whose digit is the same for every key (the batch
    field of a one-scan batch, say) is skipped. Sequential: O(n) per pass, no comparisons."""

    @T.prim_func(private=True, s_tir=True)
    def sparse_radix_argsort(k: T.handle, o: T.handle):
        T.func_attr(ATTRS)
        n = T.int64()
        K = T.match_buffer(k, (n,), "int64")
        O = T.match_buffer(o, (n,), "int32")
        with T.sblock("root"):
            tmp = T.alloc_buffer((n,), "int32")
            hist = T.alloc_buffer((FIELD,), "int32")
            run = T.decl_buffer((2,), "int32", scope="local")
            for i in range(n):
                O[i] = T.Cast("int32", i)
            for p in range(4):
                for d in range(FIELD):
                    hist[d] = 0
                for i in range(n):
                    hist[T.Cast("int32", (K[i] >> T.Cast("int64", p * 16)) & T.int64(FIELD - 1))] = hist[
                        T.Cast("int32", (K[i] >> T.Cast("int64", p * 16)) & T.int64(FIELD - 1))] + 1
                if n > T.int64(0):
                    if T.Cast("int64", hist[T.Cast("int32", (K[0] >> T.Cast("int64", p * 16)) & T.int64(FIELD - 1))]) < n:
                        run[0] = 0
                        for d in range(FIELD):
                            run[1] = hist[d]
                            hist[d] = run[0]
                            run[0] = run[0] + run[1]
                        for i in range(n):
                            tmp[hist[T.Cast("int32", (K[O[i]] >> T.Cast("int64", p * 16)) & T.int64(FIELD - 1))]] = O[i]
                            hist[T.Cast("int32", (K[O[i]] >> T.Cast("int64", p * 16)) & T.int64(FIELD - 1))] = hist[
                                T.Cast("int32", (K[O[i]] >> T.Cast("int64", p * 16)) & T.int64(FIELD - 1))] + 1
                        for i in range(n):
                            O[i] = tmp[i]

    return sparse_radix_argsort
