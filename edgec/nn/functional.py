"""Sparse convolution in plain PyTorch: kernel maps by sorted-key search, then gather-GEMM-scatter.

A sparse tensor is ``feats`` [N, C] plus ``coords`` [N, 4] int32 rows (batch, x, y, z). Every
function here is differentiable in its float inputs (the integer index work carries no gradient),
so the custom ops in :mod:`edgec.nn.ops` use these both as their kernels and for their backward.
The semantics are those of the ``edgec`` ONNX domain (docs/operators.md).
"""

from __future__ import annotations

import torch

from edgec.errors import BadInputError


class SparseInputError(BadInputError):
    """Malformed sparse tensor or layer arguments (duplicate or negative coords, channel mismatch)."""


def _keys(coords: torch.Tensor, lo: torch.Tensor, extent: torch.Tensor) -> torch.Tensor:
    """Row-major int64 keys of ``coords`` [*, 4] inside the box [lo, lo + extent); the order of the
    keys is the lexicographic order of (batch, x, y, z)."""
    c = coords.to(torch.int64) - lo
    return ((c[..., 0] * extent[1] + c[..., 1]) * extent[2] + c[..., 2]) * extent[3] + c[..., 3]


class _Table:
    """Lookup of coordinate rows: sorted keys and the row each came from."""

    def __init__(self, coords: torch.Tensor):
        c = coords.to(torch.int64)
        if c.shape[0]:
            self.lo, hi = c.min(0).values, c.max(0).values
        else:
            self.lo = hi = torch.zeros(4, dtype=torch.int64)
        self.hi = hi
        self.extent = hi - self.lo + 1
        self.keys, self.rows = torch.sort(_keys(c, self.lo, self.extent))

    def find(self, query: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(query positions that are present, the matching table rows)."""
        inside = ((query >= self.lo) & (query <= self.hi)).all(-1)
        pos = torch.nonzero(inside).flatten()
        if pos.numel() == 0 or self.keys.numel() == 0:
            empty = torch.zeros(0, dtype=torch.int64)
            return empty, empty
        k = _keys(query[pos], self.lo, self.extent)
        at = torch.searchsorted(self.keys, k).clamp_(max=self.keys.numel() - 1)
        hit = self.keys[at] == k
        return pos[hit], self.rows[at[hit]]


def _offsets(kernel_size) -> torch.Tensor:
    """Every kernel index a, [K, 3] in x-major order (the order of the weight's leading axes)."""
    grids = torch.meshgrid(*[torch.arange(k) for k in kernel_size], indexing="ij")
    return torch.stack([g.flatten() for g in grids], -1)


def _with_batch(spatial: torch.Tensor) -> torch.Tensor:
    return torch.cat([torch.zeros(spatial.shape[:-1] + (1,), dtype=spatial.dtype), spatial], -1)


def check_sparse(feats: torch.Tensor, coords: torch.Tensor, what: str = "input") -> None:
    """Raise :class:`SparseInputError` for a malformed sparse tensor."""
    if feats.dim() != 2 or coords.dim() != 2 or coords.shape[1] != 4:
        raise SparseInputError(f"{what}: feats must be [N, C] and coords [N, 4], got {tuple(feats.shape)=} "
                               f"{tuple(coords.shape)=}")
    if feats.shape[0] != coords.shape[0]:
        raise SparseInputError(f"{what}: {feats.shape[0]} feature rows but {coords.shape[0]} coordinate rows")
    if coords.dtype not in (torch.int32, torch.int64):
        raise SparseInputError(f"{what}: coords must be int32, got {coords.dtype}")
    if coords.numel() and bool((coords < 0).any()):
        row = int(torch.nonzero((coords < 0).any(1))[0])
        raise SparseInputError(f"{what}: negative coordinate {coords[row].tolist()} at row {row}")
    if coords.shape[0] > 1:
        keys = _keys(coords, coords.to(torch.int64).min(0).values,
                     coords.to(torch.int64).max(0).values - coords.to(torch.int64).min(0).values + 1)
        uniq, counts = torch.unique(keys, return_counts=True)
        if uniq.numel() != keys.numel():
            dup = uniq[counts > 1][0]
            row = int(torch.nonzero(keys == dup)[0])
            raise SparseInputError(f"{what}: duplicate coordinate {coords[row].tolist()} (row {row})")


def conv_output_extent(spatial_shape, kernel_size, stride, dilation, padding) -> tuple[int, int, int]:
    return tuple((s + 2 * p - d * (k - 1) - 1) // st + 1
                 for s, k, st, d, p in zip(spatial_shape, kernel_size, stride, dilation, padding))


def kernel_map(coords, kernel_size, stride, dilation, padding, subm, inverse, spatial_shape=None,
               out_coords=None):
    """(out_coords [M, 4] int32, [(kernel index, input rows, output rows)] for each kernel index)."""
    offsets = _offsets(kernel_size)
    stride_t, dil, pad = (torch.tensor(v, dtype=torch.int64) for v in (stride, dilation, padding))
    c = coords.to(torch.int64)
    pairs = []
    if subm:
        table = _Table(c)
        centre = (torch.tensor(kernel_size) - 1) // 2
        for a, off in enumerate(offsets):
            # out[i] gathers feats[j] with coords[j] = coords[i] + (a - centre)·dilation
            out_rows, in_rows = table.find(c + _with_batch((off - centre) * dil))
            pairs.append((a, in_rows, out_rows))
        return coords.to(torch.int32), pairs
    if inverse:
        table = _Table(out_coords.to(torch.int64))
        for a, off in enumerate(offsets):
            # q = p·stride − padding + a·dilation
            q = c.clone()
            q[:, 1:] = c[:, 1:] * stride_t - pad + off * dil
            in_rows, out_rows = table.find(q)
            pairs.append((a, in_rows, out_rows))
        return out_coords.to(torch.int32), pairs
    # generalized conv: q·stride = p + padding − a·dilation, q ≥ 0 (and inside the output extent)
    limit = None
    if spatial_shape is not None:
        limit = torch.tensor(conv_output_extent(spatial_shape, kernel_size, stride, dilation, padding))
    cand = []
    for a, off in enumerate(offsets):
        num = c[:, 1:] + pad - off * dil
        ok = ((num % stride_t) == 0).all(1) & (num >= 0).all(1)
        q = num // stride_t
        if limit is not None:
            ok &= (q < limit).all(1)
        rows = torch.nonzero(ok).flatten()
        cand.append((a, rows, torch.cat([c[rows, :1], q[rows]], 1)))
    everything = torch.cat([q for _, _, q in cand]) if cand else torch.zeros(0, 4, dtype=torch.int64)
    if everything.shape[0] == 0:
        return torch.zeros(0, 4, dtype=torch.int32), [(a, r, r) for a, r, _ in cand]
    lo = torch.zeros(4, dtype=torch.int64)
    extent = everything.max(0).values + 1
    keys = _keys(everything, lo, extent)
    uniq, inv = torch.unique(keys, sorted=True, return_inverse=True)
    out = _unkey(uniq, extent)
    start = 0
    for a, rows, q in cand:
        pairs.append((a, rows, inv[start:start + rows.numel()]))
        start += rows.numel()
    return out.to(torch.int32), pairs


def _unkey(keys: torch.Tensor, extent: torch.Tensor) -> torch.Tensor:
    z = keys % extent[3]
    r = keys // extent[3]
    y = r % extent[2]
    r = r // extent[2]
    x = r % extent[1]
    b = r // extent[1]
    return torch.stack([b, x, y, z], 1)


def gather_gemm_scatter(feats, weight, bias, pairs, num_out: int) -> torch.Tensor:
    """out[q] = bias + Σ feats[p]·W[a] over the (a, p, q) pairs; weight is [Kx, Ky, Kz, Cin, Cout]."""
    cout = weight.shape[-1]
    dtype = feats.dtype
    if dtype in (torch.float16, torch.bfloat16):  # half inputs accumulate in float32
        feats, weight = feats.float(), weight.float()
        bias = bias.float() if bias is not None else None
    w = weight.reshape(-1, weight.shape[-2], cout)
    out = feats.new_zeros((num_out, cout))
    for a, in_rows, out_rows in pairs:
        if in_rows.numel():
            out = out.index_add(0, out_rows, feats[in_rows] @ w[a])
    if bias is not None:
        out = out + bias
    return out.to(dtype)


def check_conv_args(feats, weight, bias, kernel_size, stride, subm, inverse, out_coords) -> None:
    if weight.dim() != 5 or tuple(weight.shape[:3]) != tuple(kernel_size):
        raise SparseInputError(f"weight must be [Kx, Ky, Kz, Cin, Cout] with K={tuple(kernel_size)}, "
                               f"got {tuple(weight.shape)=}")
    if feats.shape[1] != weight.shape[3]:
        raise SparseInputError(f"channel mismatch: feats has {feats.shape[1]} channels, weight expects "
                               f"Cin={weight.shape[3]} ({tuple(weight.shape)=})")
    if bias is not None and tuple(bias.shape) != (weight.shape[4],):
        raise SparseInputError(f"bias must be [Cout={weight.shape[4]}], got {tuple(bias.shape)=}")
    if subm and (any(s != 1 for s in stride) or any(k % 2 == 0 for k in kernel_size)):
        raise SparseInputError(f"subm needs stride 1 and odd kernel sizes, got {tuple(kernel_size)=} {tuple(stride)=}")
    if subm and inverse:
        raise SparseInputError("subm and inverse exclude each other")
    if inverse and out_coords is None:
        raise SparseInputError("inverse=1 needs out_coords (the input coords of the conv it inverts)")


def sparse_conv3d(feats, coords, weight, bias=None, out_coords=None, *, kernel_size, stride=(1, 1, 1),
                  dilation=(1, 1, 1), padding=(0, 0, 0), subm=False, inverse=False, spatial_shape=None,
                  check=True):
    """Sparse 3-D convolution; returns (out_feats [M, Cout], out_coords [M, 4] int32)."""
    if check:
        check_sparse(feats, coords)
        check_conv_args(feats, weight, bias, kernel_size, stride, subm, inverse, out_coords)
        if inverse:
            check_sparse(out_coords.new_zeros((out_coords.shape[0], 0)).float(), out_coords, "out_coords")
    out_c, pairs = kernel_map(coords, kernel_size, stride, dilation, padding, subm, inverse,
                              spatial_shape, out_coords)
    return gather_gemm_scatter(feats, weight, bias, pairs, out_c.shape[0]), out_c


def sparse_to_dense(feats, coords, spatial_shape, batch_size: int) -> torch.Tensor:
    """Scatter into a dense [B, C, X, Y, Z] grid (zeros where no site is active)."""
    check_sparse(feats, coords)
    c = coords.to(torch.int64)
    bound = torch.tensor([batch_size, *spatial_shape])
    if c.shape[0] and bool((c >= bound).any()):
        row = int(torch.nonzero((c >= bound).any(1))[0])
        raise SparseInputError(f"coordinate {coords[row].tolist()} lies outside batch_size={batch_size} "
                               f"spatial_shape={tuple(spatial_shape)}")
    x, y, z = spatial_shape
    flat = ((c[:, 0] * x + c[:, 1]) * y + c[:, 2]) * z + c[:, 3]
    dense = feats.new_zeros((batch_size * x * y * z, feats.shape[1]))
    dense = dense.index_put((flat,), feats)
    return dense.reshape(batch_size, x, y, z, -1).permute(0, 4, 1, 2, 3).contiguous()


def voxelize(points, voxel_size, point_range, max_voxels: int):
    """Mean-pool points [P, 3+F] into voxels; returns (feats [M, 3+F], coords [M, 4] int32), batch 0,
    sorted by (x, y, z) and truncated to the first ``max_voxels``."""
    if points.dim() != 2 or points.shape[1] < 3:
        raise SparseInputError(f"points must be [P, 3+F], got {tuple(points.shape)=}")
    # float64 for the range test and the voxel index, so points on a voxel boundary land where the
    # numpy reference puts them
    lo = torch.tensor(point_range[:3], dtype=torch.float64)
    hi = torch.tensor(point_range[3:], dtype=torch.float64)
    size = torch.tensor(voxel_size, dtype=torch.float64)
    xyz = points[:, :3].detach().to(torch.float64)
    keep = torch.nonzero(((xyz >= lo) & (xyz < hi)).all(1)).flatten()
    pts = points[keep]
    idx = torch.floor((xyz[keep] - lo) / size).to(torch.int64)
    coords = _with_batch(idx)
    extent = torch.cat([torch.ones(1, dtype=torch.int64),
                        idx.max(0).values + 1 if idx.shape[0] else torch.ones(3, dtype=torch.int64)])
    keys = _keys(coords, torch.zeros(4, dtype=torch.int64), extent)
    uniq, inv = torch.unique(keys, sorted=True, return_inverse=True)
    m = min(int(uniq.numel()), int(max_voxels))
    sums = points.new_zeros((uniq.numel(), points.shape[1])).index_add(0, inv, pts)
    counts = torch.bincount(inv, minlength=uniq.numel()).to(points.dtype)
    feats = (sums / counts[:, None])[:m]
    return feats, _unkey(uniq[:m], extent).to(torch.int32)
