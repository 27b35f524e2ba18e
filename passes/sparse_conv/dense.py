"""TIR kernels for the bridges between dense and sparse: SparseToDense and Voxelize."""

from __future__ import annotations

from tvm.script import tirx as T

from edgec.passes.sparse_conv.kmap import ATTRS, FIELD, SENTINEL, THREADS


def to_dense(batch: int, c: int, shape, dtype: str, gpu: bool):
    """feats [n, C], coords [n, 4] -> dense [B, C, X, Y, Z], zero where no row lands."""
    sx, sy, sz = shape
    total = batch * c * sx * sy * sz

    @T.macro(hygienic=False)
    def scatter(i, batch, sx, sy, sz):
        if (C[i, 0] >= 0 and C[i, 0] < batch and C[i, 1] >= 0 and C[i, 1] < sx and C[i, 2] >= 0
                and C[i, 2] < sy and C[i, 3] >= 0 and C[i, 3] < sz):
            for ch in range(c):
                d[C[i, 0], ch, C[i, 1], C[i, 2], C[i, 3]] = F[i, ch]

    @T.prim_func(private=True, s_tir=True)
    def sparse_to_dense(f: T.handle, co: T.handle, d: T.Buffer((batch, c, sx, sy, sz), dtype)):
        T.func_attr(ATTRS)
        n = T.int64()
        F = T.match_buffer(f, (n, c), dtype)
        C = T.match_buffer(co, (n, 4), "int32")
        flat = T.decl_buffer((total,), dtype, data=d.data)
        with T.sblock("root"):
            if gpu:
                for bx in T.thread_binding(T.ceildiv(total, THREADS), thread="blockIdx.x"):
                    for tx in T.thread_binding(THREADS, thread="threadIdx.x"):
                        if bx * THREADS + tx < total:
                            flat[bx * THREADS + tx] = T.Cast(dtype, 0)
                for bx in T.thread_binding(T.ceildiv(n, T.int64(THREADS)), thread="blockIdx.x"):
                    for tx in T.thread_binding(T.int64(THREADS), thread="threadIdx.x"):
                        if bx * T.int64(THREADS) + tx < n:
                            scatter(bx * T.int64(THREADS) + tx, batch, sx, sy, sz)
            else:
                for t in T.parallel(total):
                    flat[t] = T.Cast(dtype, 0)
                for i in T.parallel(n):
                    scatter(i, batch, sx, sy, sz)

    return sparse_to_dense


def voxel_keys(cols: int, dtype: str, voxel_size, point_range, gpu: bool):
    """points [P, cols] -> voxel keys [P] int64 (batch 0), SENTINEL for points outside the range.

    float64 arithmetic, so a point on a voxel boundary lands where the reference puts it."""
    vx, vy, vz = (float(v) for v in voxel_size)
    x0, y0, z0, x1, y1, z1 = (float(v) for v in point_range)

    @T.macro(hygienic=False)
    def key(i, x0, y0, z0, x1, y1, z1, vx, vy, vz):
        if (T.Cast("float64", P[i, 0]) >= T.float64(x0) and T.Cast("float64", P[i, 0]) < T.float64(x1)
                and T.Cast("float64", P[i, 1]) >= T.float64(y0) and T.Cast("float64", P[i, 1]) < T.float64(y1)
                and T.Cast("float64", P[i, 2]) >= T.float64(z0) and T.Cast("float64", P[i, 2]) < T.float64(z1)):
            K[i] = (T.Cast("int64", T.floor((T.Cast("float64", P[i, 0]) - T.float64(x0)) / T.float64(vx)))
                    * T.int64(1 << 32)
                    + T.Cast("int64", T.floor((T.Cast("float64", P[i, 1]) - T.float64(y0)) / T.float64(vy)))
                    * T.int64(1 << 16)
                    + T.Cast("int64", T.floor((T.Cast("float64", P[i, 2]) - T.float64(z0)) / T.float64(vz))))
        else:
            K[i] = T.int64(SENTINEL)

    @T.prim_func(private=True, s_tir=True)
    def sparse_voxel_keys(p: T.handle, k: T.handle):
        T.func_attr(ATTRS)
        n = T.int64()
        P = T.match_buffer(p, (n, cols), dtype)
        K = T.match_buffer(k, (n,), "int64")
        with T.sblock("root"):
            if gpu:
                for bx in T.thread_binding(T.ceildiv(n, T.int64(THREADS)), thread="blockIdx.x"):
                    for tx in T.thread_binding(T.int64(THREADS), thread="threadIdx.x"):
                        if bx * T.int64(THREADS) + tx < n:
                            key(bx * T.int64(THREADS) + tx, x0, y0, z0, x1, y1, z1, vx, vy, vz)
            else:
                for i in T.parallel(n):
                    key(i, x0, y0, z0, x1, y1, z1, vx, vy, vz)

    return sparse_voxel_keys


def segments(max_voxels: int, gpu: bool):
    """keys [P], order [P] -> starts [P+1] (voxel j's points are order[starts[j]:starts[j+1]]) and
    count [1] = number of voxels kept (the first ``max_voxels`` in key order). One sequential pass."""

    @T.macro(hygienic=False)
    def walk(max_voxels):
        c = T.decl_buffer((1,), "int64", scope="local")
        stop = T.decl_buffer((1,), "int32", scope="local")
        c[0] = T.int64(0)
        stop[0] = 0
        for i in range(n):
            if stop[0] == 0:
                if K[O[i]] == T.int64(SENTINEL):
                    S[c[0]] = i
                    stop[0] = 1
                elif i == T.int64(0) or K[O[i]] != K[O[i - T.int64(1)]]:
                    S[c[0]] = i
                    if c[0] == T.int64(max_voxels):
                        stop[0] = 1
                    else:
                        c[0] = c[0] + T.int64(1)
        if stop[0] == 0:
            S[c[0]] = n
        cnt[0] = c[0]

    @T.prim_func(private=True, s_tir=True)
    def sparse_voxel_segments(k: T.handle, o: T.handle, s: T.handle, cnt: T.Buffer((1,), "int64")):
        T.func_attr(ATTRS)
        n = T.int64()
        K = T.match_buffer(k, (n,), "int64")
        O = T.match_buffer(o, (n,), "int32")
        S = T.match_buffer(s, (n + T.int64(1),), "int64")
        with T.sblock("root"):
            if gpu:
                for bx in T.thread_binding(1, thread="blockIdx.x"):
                    for tx in T.thread_binding(1, thread="threadIdx.x"):
                        walk(max_voxels)
            else:
                walk(max_voxels)

    return sparse_voxel_segments


def voxel_mean(cols: int, dtype: str, gpu: bool):
    """points, keys, order, starts -> feats [m, cols] (mean of the voxel's points), coords [m, 4]."""

    @T.macro(hygienic=False)
    def mean(j):
        acc = T.decl_buffer((cols,), "float64", scope="local")
        for t in range(cols):
            acc[t] = T.float64(0)
        for r in range(S[j + T.int64(1)] - S[j]):
            for t in range(cols):
                acc[t] = acc[t] + T.Cast("float64", P[O[S[j] + r], t])
        for t in range(cols):
            F[j, t] = T.Cast(dtype, acc[t] / T.Cast("float64", S[j + T.int64(1)] - S[j]))
        C[j, 0] = 0
        C[j, 1] = T.Cast("int32", K[O[S[j]]] >> T.int64(32))
        C[j, 2] = T.Cast("int32", (K[O[S[j]]] >> T.int64(16)) & T.int64(FIELD - 1))
        C[j, 3] = T.Cast("int32", K[O[S[j]]] & T.int64(FIELD - 1))

    @T.prim_func(private=True, s_tir=True)
    def sparse_voxel_mean(p: T.handle, k: T.handle, o: T.handle, s: T.handle, f: T.handle, c: T.handle):
        T.func_attr(ATTRS)
        n = T.int64()
        m = T.int64()
        P = T.match_buffer(p, (n, cols), dtype)
        K = T.match_buffer(k, (n,), "int64")
        O = T.match_buffer(o, (n,), "int32")
        S = T.match_buffer(s, (n + T.int64(1),), "int64")
        F = T.match_buffer(f, (m, cols), dtype)
        C = T.match_buffer(c, (m, 4), "int32")
        with T.sblock("root"):
            if gpu:
                for bx in T.thread_binding(T.ceildiv(m, T.int64(THREADS)), thread="blockIdx.x"):
                    for tx in T.thread_binding(T.int64(THREADS), thread="threadIdx.x"):
                        if bx * T.int64(THREADS) + tx < m:
                            mean(bx * T.int64(THREADS) + tx)
            else:
                for j in T.parallel(m):
                    mean(j)

    return sparse_voxel_mean
