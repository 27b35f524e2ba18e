"""Straightforward numpy reference of the sparse operators (issue 6 semantics).

Loops and dicts, no cleverness: tests compare the compiled kernels against this. A sparse tensor
is ``feats`` [N, C] plus ``coords`` [N, 4] int32 whose rows are (batch, x, y, z) and unique.
"""

from __future__ import annotations

import itertools

import numpy as np


def _triple(v, name):
    t = tuple(int(x) for x in (v if isinstance(v, (tuple, list, np.ndarray)) else (v, v, v)))
    if len(t) != 3:
        raise ValueError(f"{name} needs 3 values, got {t}")
    return t


def _index(coords):
    table = {}
    for i, row in enumerate(np.asarray(coords, dtype=np.int64)):
        key = tuple(int(v) for v in row)
        if key in table:
            raise ValueError(f"duplicate coordinate {key} at rows {table[key]} and {i}")
        table[key] = i
    return table


def output_extent(spatial_shape, kernel_size, stride, dilation, padding):
    """Dense output extent per axis, as spconv computes it."""
    return tuple(
        (s + 2 * p - d * (k - 1) - 1) // st + 1
        for s, k, st, d, p in zip(spatial_shape, kernel_size, stride, dilation, padding)
    )


def sparse_conv3d(feats, coords, weight, bias=None, *, kernel_size, stride=(1, 1, 1),
                  dilation=(1, 1, 1), padding=(0, 0, 0), subm=False, inverse=False,
                  spatial_shape=None, out_coords=None):
    """Returns (out_feats [M, Cout], out_coords [M, 4] int32); weight is [Kx, Ky, Kz, Cin, Cout]."""
    feats = np.asarray(feats)
    coords = np.asarray(coords, dtype=np.int32)
    weight = np.asarray(weight)
    k, s, d, p = (_triple(v, n) for v, n in ((kernel_size, "kernel_size"), (stride, "stride"),
                                             (dilation, "dilation"), (padding, "padding")))
    if weight.shape[:3] != k or weight.shape[3] != feats.shape[1]:
        raise ValueError(f"weight shape {weight.shape} does not match kernel {k} and Cin {feats.shape[1]}")
    cout = weight.shape[4]
    acc = np.float64
    in_table = _index(coords)
    offsets = list(itertools.product(*(range(ki) for ki in k)))

    if subm:
        if any(ki % 2 == 0 for ki in k) or s != (1, 1, 1):
            raise ValueError("submanifold conv needs stride 1 and odd kernel sizes")
        out_c = coords.copy()
        out = np.zeros((len(coords), cout), acc)
        for i, row in enumerate(coords):
            for a in offsets:
                nb = (int(row[0]),) + tuple(int(row[1 + t]) + (a[t] - (k[t] - 1) // 2) * d[t] for t in range(3))
                j = in_table.get(nb)
                if j is not None:
                    out[i] += feats[j].astype(acc) @ weight[a].astype(acc)
    elif inverse:
        if out_coords is None:
            raise ValueError("inverse conv needs out_coords")
        out_c = np.asarray(out_coords, dtype=np.int32)
        out_table = _index(out_c)
        out = np.zeros((len(out_c), cout), acc)
        for i, row in enumerate(coords):
            for a in offsets:
                q = (int(row[0]),) + tuple(int(row[1 + t]) * s[t] - p[t] + a[t] * d[t] for t in range(3))
                j = out_table.get(q)
                if j is not None:
                    out[j] += feats[i].astype(acc) @ weight[a].astype(acc)
    else:
        extent = None if spatial_shape is None else output_extent(_triple(spatial_shape, "spatial_shape"), k, s, d, p)
        pairs = {}  # output coordinate -> list of (input row, kernel offset)
        for i, row in enumerate(coords):
            for a in offsets:
                q = [int(row[0])]
                for t in range(3):
                    num = int(row[1 + t]) + p[t] - a[t] * d[t]
                    if num < 0 or num % s[t]:
                        break
                    qt = num // s[t]
                    if extent is not None and qt >= extent[t]:
                        break
                    q.append(qt)
                else:
                    pairs.setdefault(tuple(q), []).append((i, a))
        keys = sorted(pairs)
        out_c = np.array(keys, dtype=np.int32).reshape(-1, 4)
        out = np.zeros((len(keys), cout), acc)
        for j, key in enumerate(keys):
            for i, a in pairs[key]:
                out[j] += feats[i].astype(acc) @ weight[a].astype(acc)
    if bias is not None:
        out += np.asarray(bias, acc)
    return out.astype(feats.dtype), out_c


def sparse_to_dense(feats, coords, spatial_shape, batch_size):
    """Scatters a sparse tensor into a dense [B, C, X, Y, Z] grid (zeros elsewhere)."""
    feats = np.asarray(feats)
    x, y, z = _triple(spatial_shape, "spatial_shape")
    dense = np.zeros((int(batch_size), feats.shape[1], x, y, z), feats.dtype)
    for i, (b, cx, cy, cz) in enumerate(np.asarray(coords, dtype=np.int64)):
        dense[b, :, cx, cy, cz] = feats[i]
    return dense


def voxelize(points, voxel_size, point_range, max_voxels):
    """Points [P, 3+F] -> (feats [M, 3+F] mean of each voxel's points, coords [M, 4] int32).

    A point is kept iff min <= p < max on every axis; voxel = floor((p - min) / voxel_size); batch 0;
    voxels sorted by (batch, x, y, z) and truncated to the first ``max_voxels``.
    """
    points = np.asarray(points)
    vs = np.asarray(voxel_size, np.float64).reshape(3)
    lo = np.asarray(point_range[:3], np.float64)
    hi = np.asarray(point_range[3:], np.float64)
    sums, counts = {}, {}
    for pt in points:
        xyz = pt[:3].astype(np.float64)
        if np.any(xyz < lo) or np.any(xyz >= hi):
            continue
        key = (0,) + tuple(int(np.floor(v)) for v in (xyz - lo) / vs)
        sums[key] = sums.get(key, 0.0) + pt.astype(np.float64)
        counts[key] = counts.get(key, 0) + 1
    keys = sorted(sums)[: int(max_voxels)]
    feats = np.array([sums[k] / counts[k] for k in keys], np.float64).reshape(-1, points.shape[1])
    return feats.astype(points.dtype), np.array(keys, np.int32).reshape(-1, 4)
