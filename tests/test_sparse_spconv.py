"""edgec.nn against spconv 2.3 (CPU), with spconv's weights mapped into our layout.

spconv stores a native-algorithm weight as [Cout, Kx, Ky, Kz, Cin] and reads indices as
(batch, x, y, z) along its spatial_shape; our weight is [Kx, Ky, Kz, Cin, Cout]. Its CPU path races
with more than one thread, so every test here runs it single-threaded.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgec import nn as enn

import spconv.pytorch as spconv  # noqa: E402 - a dev dependency: the independent reference, never skipped

SHAPE = (12, 10, 7)


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _sparse(n, channels, batches, seed):
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(np.arange(batches), *[np.arange(e) for e in SHAPE], indexing="ij"), -1)
    grid = grid.reshape(-1, 4)
    coords = grid[np.sort(rng.choice(len(grid), size=n, replace=False))].astype(np.int32)
    feats = rng.standard_normal((n, channels)).astype(np.float32)
    return torch.from_numpy(feats), torch.from_numpy(coords)


def _load(ours, theirs):
    """Copy spconv's weight [Cout, K.., Cin] and bias into our layer as [K.., Cin, Cout]."""
    assert tuple(theirs.weight.shape) == (ours.out_channels, *ours.kernel_size, ours.in_channels)
    with torch.no_grad():
        ours.weight.copy_(theirs.weight.permute(1, 2, 3, 4, 0))
        if theirs.bias is not None:
            ours.bias.copy_(theirs.bias)


def _sorted(feats, coords):
    c = coords.numpy()
    order = np.lexsort(c[:, ::-1].T)
    return feats.detach().numpy()[order], c[order]


@pytest.mark.parametrize("k,dilation,cin,cout,batches", [
    (3, 1, 3, 5, 1), (3, 2, 4, 3, 2), ((3, 1, 5), 1, 5, 7, 3), (5, 1, 1, 2, 1),
])
def test_subm(k, dilation, cin, cout, batches):
    torch.manual_seed(0)
    feats, coords = _sparse(200, cin, batches, seed=batches)
    theirs = spconv.SubMConv3d(cin, cout, k, dilation=dilation, bias=True, indice_key="subm")
    ours = enn.SubMConv3d(cin, cout, k, dilation=dilation)
    _load(ours, theirs)
    with torch.no_grad():
        want = theirs(spconv.SparseConvTensor(feats, coords, list(SHAPE), batches))
        got = ours(enn.SparseTensor(feats, coords))
    assert torch.equal(got.coords, want.indices.int())
    np.testing.assert_allclose(got.feats.numpy(), want.features.numpy(), rtol=1e-5, atol=1e-5)


STRIDED = [  # kernel, stride, padding, dilation, channels in/out, batches
    (3, 2, 1, 1, 3, 6, 1),
    (2, 2, 0, 1, 4, 5, 2),
    (3, 2, 0, 1, 2, 3, 1),
    ((3, 3, 1), (2, 2, 1), (1, 1, 0), 1, 5, 7, 2),
    (3, 1, 1, 1, 3, 4, 1),
    (3, 2, 2, 2, 3, 3, 3),
]


@pytest.mark.parametrize("k,s,p,d,cin,cout,batches", STRIDED)
def test_strided_then_inverse(k, s, p, d, cin, cout, batches):
    torch.manual_seed(1)
    feats, coords = _sparse(250, cin, batches, seed=10 + batches)
    down_t = spconv.SparseConv3d(cin, cout, k, stride=s, padding=p, dilation=d, bias=True, indice_key="down")
    up_t = spconv.SparseInverseConv3d(cout, cin + 1, k, indice_key="down", bias=True)
    down = enn.SparseConv3d(cin, cout, k, stride=s, padding=p, dilation=d, spatial_shape=SHAPE)
    up = enn.SparseInverseConv3d(cout, cin + 1, k, stride=s, padding=p, dilation=d)
    _load(down, down_t)
    _load(up, up_t)
    with torch.no_grad():
        mid_t = down_t(spconv.SparseConvTensor(feats, coords, list(SHAPE), batches))
        out_t = up_t(mid_t)
        x = enn.SparseTensor(feats, coords)
        mid = down(x)
        out = up(mid, x)
    # spconv leaves a strided conv's output unsorted; ours is sorted by (batch, x, y, z)
    want_f, want_c = _sorted(mid_t.features, mid_t.indices)
    np.testing.assert_array_equal(mid.coords.numpy(), want_c)
    np.testing.assert_allclose(mid.feats.numpy(), want_f, rtol=1e-5, atol=1e-5)
    # the inverse conv produces the original sites in their original order, in both libraries
    assert torch.equal(out.coords, out_t.indices.int())
    assert torch.equal(out.coords, coords)
    # feed spconv's own (unsorted) intermediate into our inverse: the result cannot depend on row order
    with torch.no_grad():
        out2 = up(enn.SparseTensor(mid_t.features, mid_t.indices.int()), coords)
    np.testing.assert_allclose(out.feats.numpy(), out_t.features.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out2.feats.numpy(), out_t.features.numpy(), rtol=1e-5, atol=1e-5)


def test_small_unet_chain():
    """subm → strided → subm → inverse, as in MinkUNet's first stage, layer for layer."""
    torch.manual_seed(2)
    feats, coords = _sparse(300, 4, 2, seed=20)
    t = [spconv.SubMConv3d(4, 8, 3, indice_key="s0"),
         spconv.SparseConv3d(8, 16, 2, stride=2, indice_key="d0"),
         spconv.SubMConv3d(16, 16, 3, indice_key="s1"),
         spconv.SparseInverseConv3d(16, 8, 2, indice_key="d0")]
    o = [enn.SubMConv3d(4, 8, 3), enn.SparseConv3d(8, 16, 2, stride=2, spatial_shape=SHAPE),
         enn.SubMConv3d(16, 16, 3), enn.SparseInverseConv3d(16, 8, 2, stride=2)]
    for a, b in zip(o, t):
        _load(a, b)
    with torch.no_grad():
        xt = spconv.SparseConvTensor(feats, coords, list(SHAPE), 2)
        yt = t[3](t[2](t[1](t[0](xt))))
        x = enn.SparseTensor(feats, coords)
        s0 = o[0](x)
        y = o[3](o[2](o[1](s0)), s0)
    assert torch.equal(y.coords, yt.indices.int())
    np.testing.assert_allclose(y.feats.numpy(), yt.features.numpy(), rtol=1e-4, atol=1e-4)
