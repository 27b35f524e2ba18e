"""CPU kernel-map kernels over an open-addressing hash table (linear probing) built in TIR.

On CPUs a serial insertion pass is cheap and lookups become O(1) probes instead of binary
searches; GPUs keep the sort + search index of ``kmap`` (no atomics needed). Tables are sized
by the data (``cap`` about twice the keys), so nothing depends on the declared maximum.
"""

from __future__ import annotations

from math import gcd

from tvm.script import tirx as T

from edgec.passes.sparse_conv.kmap import ATTRS, EMPTY, FIELD, THREADS, hash_slot


def table_size(n, bound: int = 1):
    """Slots for up to ``n * bound`` keys: load factor at most one half."""
    return n * (2 * bound) + 1


def sites_bound(kernel_size, stride, dilation) -> int:
    """Most output sites one input site can reach: per axis, the offsets a with a·d ≡ r (mod s)."""
    bound = 1
    for k, s, d in zip(kernel_size, stride, dilation):
        bound *= -(-k * gcd(d, s) // s)
    return bound


def build():
    """keys [n] -> table keys [cap], rows [cap]; refuses duplicate coordinates."""

    @T.prim_func(private=True, s_tir=True)
    def sparse_hash_build(k: T.handle, tk: T.handle, tv: T.handle):
        T.func_attr(ATTRS)
        n = T.int64()
        cap = T.int64()
        K = T.match_buffer(k, (n,), "int64")
        TK = T.match_buffer(tk, (cap,), "int64")
        TV = T.match_buffer(tv, (cap,), "int32")
        with T.sblock("root"):
            for s in T.parallel(cap):
                TK[s] = T.int64(EMPTY)
            slot = T.decl_buffer((1,), "int64", scope="local")
            for i in range(n):
                slot[0] = hash_slot(K[i], cap)
                while TK[slot[0]] != T.int64(EMPTY) and TK[slot[0]] != K[i]:
                    slot[0] = T.if_then_else(slot[0] + T.int64(1) == cap, T.int64(0), slot[0] + T.int64(1))
                assert TK[slot[0]] != K[i], "sparse input: duplicate coordinates"
                TK[slot[0]] = K[i]
                TV[slot[0]] = T.Cast("int32", i)

    return sparse_hash_build


def sites(kvol: int, stride, pad, dil, extent):
    """coords [n, 4], offsets [K, 3] -> table keys [cap], unique output keys [n*K] (the first
    ``count`` used, in discovery order), count [1], the table slot of every (input, offset)
    pair's output site [n, K] (-1: none), and the slot of each unique key [n*K]: a strided
    conv's output sites, deduplicated through the table so only the unique ones need sorting,
    and its kernel map from the input side."""
    sx, sy, sz = stride
    px, py, pz = pad
    dx, dy, dz = dil
    ex, ey, ez = extent or (FIELD, FIELD, FIELD)

    @T.prim_func(private=True, s_tir=True)
    def sparse_hash_sites(c: T.handle, tok: T.handle, offs: T.Buffer((kvol, 3), "int32"), tk: T.handle, u: T.handle,
                          cnt: T.Buffer((1,), "int64"), sl: T.handle, us: T.handle):
        T.func_attr(ATTRS)
        n = T.int64()
        cap = T.int64()
        C = T.match_buffer(c, (n, 4), "int32")
        nt = T.int64()
        # the coordinates' checked index: passed so that its checks run first and are not dead code
        T.match_buffer(tok, (nt,), "int64")
        TK = T.match_buffer(tk, (cap,), "int64")
        U = T.match_buffer(u, (n * kvol,), "int64")
        SL = T.match_buffer(sl, (n, kvol), "int32")
        US = T.match_buffer(us, (n * kvol,), "int32")
        with T.sblock("root"):
            for s in T.parallel(cap):
                TK[s] = T.int64(EMPTY)
            dst = T.decl_buffer((3,), "int32", scope="local")
            ok = T.decl_buffer((1,), "int32", scope="local")
            slot = T.decl_buffer((1,), "int64", scope="local")
            count = T.decl_buffer((1,), "int64", scope="local")
            count[0] = T.int64(0)
            for i in range(n):
                for a in range(kvol):
                    ok[0] = 1
                    SL[i, a] = -1
                    for t in range(3):
                        num = C[i, t + 1] + T.Select(t == 0, px, T.Select(t == 1, py, pz)) - offs[a, t] * T.Select(
                            t == 0, dx, T.Select(t == 1, dy, dz))
                        st = T.Select(t == 0, sx, T.Select(t == 1, sy, sz))
                        dst[t] = T.floordiv(num, st)
                        if T.floormod(num, st) != 0 or num < 0 or dst[t] >= T.Select(t == 0, ex, T.Select(t == 1, ey, ez)):
                            ok[0] = 0
                    if ok[0] == 1:
                        slot[0] = hash_slot(T.Cast("int64", C[i, 0]) * T.int64(1 << 48) + T.Cast("int64", dst[0]) * T.int64(1 << 32)
                                            + T.Cast("int64", dst[1]) * T.int64(1 << 16) + T.Cast("int64", dst[2]), cap)
                        while TK[slot[0]] != T.int64(EMPTY) and TK[slot[0]] != (
                                T.Cast("int64", C[i, 0]) * T.int64(1 << 48) + T.Cast("int64", dst[0]) * T.int64(1 << 32)
                                + T.Cast("int64", dst[1]) * T.int64(1 << 16) + T.Cast("int64", dst[2])):
                            slot[0] = T.if_then_else(slot[0] + T.int64(1) == cap, T.int64(0), slot[0] + T.int64(1))
                        if TK[slot[0]] == T.int64(EMPTY):
                            TK[slot[0]] = (T.Cast("int64", C[i, 0]) * T.int64(1 << 48) + T.Cast("int64", dst[0]) * T.int64(1 << 32)
                                           + T.Cast("int64", dst[1]) * T.int64(1 << 16) + T.Cast("int64", dst[2]))
                            U[count[0]] = TK[slot[0]]
                            US[count[0]] = T.Cast("int32", slot[0])
                            count[0] = count[0] + T.int64(1)
                        SL[i, a] = T.Cast("int32", slot[0])
            cnt[0] = count[0]

    return sparse_hash_sites


def take_prefix(gpu: bool = False):
    """keys [L] -> the first m of them [m]."""

    @T.prim_func(private=True, s_tir=True)
    def sparse_take_prefix(u: T.handle, o: T.handle):
        T.func_attr(ATTRS)
        L = T.int64()
        m = T.int64()
        U = T.match_buffer(u, (L,), "int64")
        O = T.match_buffer(o, (m,), "int64")
        with T.sblock("root"):
            if gpu:
                for bx in T.thread_binding(T.ceildiv(m, T.int64(THREADS)), thread="blockIdx.x"):
                    for tx in T.thread_binding(T.int64(THREADS), thread="threadIdx.x"):
                        if bx * T.int64(THREADS) + tx < m:
                            O[bx * T.int64(THREADS) + tx] = U[bx * T.int64(THREADS) + tx]
            else:
                for j in T.parallel(m):
                    O[j] = U[j]

    return sparse_take_prefix


def slot_ranks():
    """order of the unique keys [m] (discovery index by output row), their slots [L] -> rank [cap]:
    each occupied slot's output row. No probing: discovery recorded every unique key's slot."""

    @T.prim_func(private=True, s_tir=True)
    def sparse_slot_ranks(o: T.handle, us: T.handle, rk: T.handle):
        T.func_attr(ATTRS)
        m = T.int64()
        L = T.int64()
        cap = T.int64()
        O = T.match_buffer(o, (m,), "int32")
        US = T.match_buffer(us, (L,), "int32")
        RK = T.match_buffer(rk, (cap,), "int32")
        with T.sblock("root"):
            for r in T.parallel(m):
                RK[US[O[r]]] = T.Cast("int32", r)

    return sparse_slot_ranks


def scatter_map(kvol: int):
    """pair slots [n, K], slot ranks [cap] -> nbr [m, K]: for output row q and offset a, the input
    row whose site it is (at most one: p = q·stride − padding + a·dilation)."""

    @T.prim_func(private=True, s_tir=True)
    def sparse_scatter_map(sl: T.handle, rk: T.handle, nb: T.handle):
        T.func_attr(ATTRS)
        n = T.int64()
        m = T.int64()
        cap = T.int64()
        SL = T.match_buffer(sl, (n, kvol), "int32")
        RK = T.match_buffer(rk, (cap,), "int32")
        NB = T.match_buffer(nb, (m, kvol), "int32")
        with T.sblock("root"):
            for j in T.parallel(m):
                for a in range(kvol):
                    NB[j, a] = -1
            for i in T.parallel(n):
                for a in range(kvol):
                    if SL[i, a] >= 0:
                        NB[RK[SL[i, a]], a] = T.Cast("int32", i)

    return sparse_scatter_map
