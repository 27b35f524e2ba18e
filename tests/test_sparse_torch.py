"""edgec.nn (plain-PyTorch sparse layers) against the numpy reference of issue 6's semantics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgec import nn as enn
from edgec.errors import BadInputError
from edgec.passes.sparse_conv import reference as ref


def random_sparse(n, channels, extent=(10, 9, 8), batches=1, seed=0, dtype=torch.float32):
    """n unique random sites spread over ``batches`` batch entries."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(np.arange(batches), *[np.arange(e) for e in extent], indexing="ij"), -1)
    grid = grid.reshape(-1, 4)
    coords = grid[np.sort(rng.choice(len(grid), size=n, replace=False))]
    coords = coords[rng.permutation(n)]  # unsorted input order: out_coords of subm must keep it
    feats = rng.standard_normal((n, channels)).astype(np.float32)
    return enn.SparseTensor(torch.from_numpy(feats).to(dtype), torch.from_numpy(coords.astype(np.int32)))


def _ref_conv(layer, x, out_coords=None):
    bias = layer.bias.detach().float().numpy() if layer.bias is not None else None
    return ref.sparse_conv3d(x.feats.float().numpy(), x.coords.numpy(), layer.weight.detach().float().numpy(),
                             bias, kernel_size=layer.kernel_size, stride=layer.stride,
                             dilation=layer.dilation, padding=layer.padding, subm=layer.subm,
                             inverse=layer.inverse, spatial_shape=layer.spatial_shape,
                             out_coords=None if out_coords is None else out_coords.numpy())


def _check(layer, x, out_coords=None, rtol=1e-5, atol=1e-5):
    with torch.no_grad():
        y = layer(x) if out_coords is None else layer(x, out_coords)
    want_f, want_c = _ref_conv(layer, x, out_coords)
    assert y.coords.dtype == torch.int32
    np.testing.assert_array_equal(y.coords.numpy(), want_c)
    np.testing.assert_allclose(y.feats.float().numpy(), want_f, rtol=rtol, atol=atol)
    return y


CONVS = {
    "subm3": lambda: enn.SubMConv3d(3, 5, 3),
    "subm5_dil2": lambda: enn.SubMConv3d(3, 5, 5, dilation=2),
    "subm_311": lambda: enn.SubMConv3d(3, 4, (3, 1, 1)),
    "subm_nobias": lambda: enn.SubMConv3d(3, 5, 3, bias=False),
    "strided_k3s2p1": lambda: enn.SparseConv3d(3, 6, 3, stride=2, padding=1),
    "strided_k2s2": lambda: enn.SparseConv3d(3, 6, 2, stride=2),
    "strided_shape": lambda: enn.SparseConv3d(3, 6, 3, stride=2, padding=1, spatial_shape=(10, 9, 8)),
    "strided_shape_nopad": lambda: enn.SparseConv3d(3, 6, 3, stride=(2, 2, 1), spatial_shape=(10, 9, 8)),
    "strided_dil2": lambda: enn.SparseConv3d(3, 6, 3, stride=2, padding=2, dilation=2),
    "generalized_s1": lambda: enn.SparseConv3d(3, 5, 3, stride=1, padding=1),
    "anisotropic": lambda: enn.SparseConv3d(3, 7, (3, 3, 2), stride=(2, 1, 2), padding=(1, 0, 0),
                                            dilation=(1, 2, 1)),
}


@pytest.mark.parametrize("name", sorted(CONVS))
@pytest.mark.parametrize("batches", [1, 3])
def test_conv_matches_reference(name, batches):
    torch.manual_seed(0)
    layer = CONVS[name]()
    _check(layer, random_sparse(120, 3, batches=batches, seed=batches))


@pytest.mark.parametrize("k,s,p,d", [(3, 2, 1, 1), (2, 2, 0, 1), (3, 2, 2, 2), ((3, 2, 3), (2, 2, 1), (1, 0, 1), 1)])
def test_inverse_conv_matches_reference(k, s, p, d):
    torch.manual_seed(1)
    x = random_sparse(150, 5, batches=2, seed=3)
    down = enn.SparseConv3d(5, 7, k, stride=s, padding=p, dilation=d)
    with torch.no_grad():
        y = down(x)
    up = enn.SparseInverseConv3d(7, 3, k, stride=s, padding=p, dilation=d)
    z = _check(up, y, x.coords)
    # the inverse reproduces exactly the sites (and row order) of the strided conv's input
    assert torch.equal(z.coords, x.coords)


def test_inverse_accepts_sparse_tensor_as_target():
    x = random_sparse(40, 2, seed=5)
    down, up = enn.SparseConv3d(2, 4, 3, stride=2, padding=1), enn.SparseInverseConv3d(4, 2, 3, 2, 1)
    with torch.no_grad():
        a = up(down(x), x)
        b = up(down(x), x.coords)
    assert torch.equal(a.feats, b.feats)


def test_float16():
    torch.manual_seed(2)
    layer = enn.SparseConv3d(3, 5, 3, stride=2, padding=1).half()
    x = random_sparse(100, 3, seed=7, dtype=torch.float16)
    y = _check(layer, x, rtol=2e-2, atol=2e-2)
    assert y.feats.dtype == torch.float16


def test_empty_output():
    # a single site at x=1 with K=2, stride 2, no padding: 1 − a is even only for a=1 → q=0;
    # with spatial_shape (1, ...) the output extent is 0 along x, so nothing survives
    x = enn.SparseTensor(torch.ones(1, 2), torch.tensor([[0, 1, 0, 0]], dtype=torch.int32))
    layer = enn.SparseConv3d(2, 3, 2, stride=2, spatial_shape=(1, 1, 1))
    with torch.no_grad():
        y = layer(x)
    assert y.feats.shape == (0, 3) and y.coords.shape == (0, 4)


def test_sparse_to_dense_matches_reference():
    x = random_sparse(90, 5, batches=2, seed=4)
    dense = enn.SparseToDense((10, 9, 8), batch_size=2)(x)
    np.testing.assert_array_equal(dense.numpy(), ref.sparse_to_dense(x.feats.numpy(), x.coords.numpy(),
                                                                     (10, 9, 8), 2))


@pytest.mark.parametrize("max_voxels", [10_000, 37])
def test_voxelize_matches_reference(max_voxels):
    rng = np.random.default_rng(0)
    pts = rng.uniform(-2.2, 2.2, (3000, 5)).astype(np.float32)
    pts[:10, :3] = [1.0, 0.5, -1.0]  # exactly on voxel boundaries and at the range's lower corner
    pts[10:20, :3] = -2.0
    layer = enn.Voxelize((0.5, 0.25, 0.5), (-2.0, -2.0, -1.0, 2.0, 2.0, 1.5), max_voxels)
    out = layer(torch.from_numpy(pts))
    want_f, want_c = ref.voxelize(pts, layer.voxel_size, layer.point_range, max_voxels)
    np.testing.assert_array_equal(out.coords.numpy(), want_c)
    np.testing.assert_allclose(out.feats.numpy(), want_f, rtol=1e-5, atol=1e-6)
    assert layer.grid_shape == (8, 16, 5)


def test_voxelize_attributes_have_onnx_precision():
    # ONNX float attributes are float32: 0.05 is stored as 0.0500000007, so a point at z=0 over
    # zmin=-4 falls in voxel 79, not 80, in the exported graph; the module must agree with it
    layer = enn.Voxelize((0.05,) * 3, (-4.0, -4.0, -4.0, 4.0, 4.0, 4.0), 100)
    pts = np.array([[0.0, 0.0, 0.0, 1.0]], np.float32)
    coords = layer(torch.from_numpy(pts)).coords.numpy()
    want = ref.voxelize(pts, np.float32([0.05] * 3), np.float32([-4, -4, -4, 4, 4, 4]), 100)[1]
    np.testing.assert_array_equal(coords, want)
    assert coords.tolist() == [[0, 79, 79, 79]]


def test_gradients_through_custom_ops():
    # gradcheck drives the custom ops' registered backward against finite differences
    from edgec.nn import ops

    torch.manual_seed(3)
    x = random_sparse(30, 2, extent=(5, 5, 5), seed=9, dtype=torch.float64)
    w1, w2, w3 = (torch.randn(*k, ci, co, dtype=torch.float64, requires_grad=True)
                  for k, ci, co in (((3, 3, 3), 2, 3), ((3, 3, 3), 3, 2), ((3, 1, 3), 2, 2)))
    b1 = torch.randn(3, dtype=torch.float64, requires_grad=True)
    feats = x.feats.requires_grad_(True)
    geo = dict(kernel_size=[3, 3, 3], stride=[2, 2, 2], dilation=[1, 1, 1], padding=[1, 1, 1])

    def net(feats, w1, b1, w2, w3):
        y, yc = ops.sparse_conv3d(feats, x.coords, w1, b1, None, *geo.values(), False, False, None)
        z, _ = ops.sparse_conv3d(y, yc, w2, None, x.coords, *geo.values(), False, True, None)
        u, _ = ops.sparse_conv3d(z, x.coords, w3, None, None, [3, 1, 3], [1, 1, 1], [1, 1, 1], [0, 0, 0],
                                 True, False, None)
        return ops.sparse_to_dense(u, x.coords, [5, 5, 5], 1)

    assert torch.autograd.gradcheck(net, (feats, w1, b1, w2, w3), fast_mode=True)


def test_training_step_reduces_loss():
    torch.manual_seed(4)
    x = random_sparse(80, 3, seed=11)
    net = torch.nn.ModuleList([enn.SubMConv3d(3, 8, 3), enn.SubMConv3d(8, 2, 3)])
    target = torch.randn(80, 2)
    opt = torch.optim.SGD(net.parameters(), lr=0.05)
    losses = []
    for _ in range(5):
        y = net[1](x.replace(torch.relu(net[0](x).feats)))
        loss = torch.nn.functional.mse_loss(y.feats, target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


class _UNetish(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.sub = enn.SubMConv3d(3, 4, 3)
        self.down = enn.SparseConv3d(4, 6, 3, stride=2, padding=1)
        self.up = enn.SparseInverseConv3d(6, 4, 3, stride=2, padding=1)

    def forward(self, feats, coords):
        x = self.sub(enn.SparseTensor(feats, coords))
        return self.up(self.down(x), x).feats


def test_torch_export_keeps_one_node_per_layer():
    x = random_sparse(60, 3, seed=12)
    net = _UNetish().eval()
    dyn = ({0: torch.export.Dim.AUTO}, {0: torch.export.Dim.AUTO})
    program = torch.export.export(net, (x.feats, x.coords), dynamic_shapes=dyn)
    convs = [n for n in program.graph.nodes if n.target is torch.ops.edgec.sparse_conv3d.default]
    assert [n.args[9:11] for n in convs] == [(True, False), (False, False), (False, True)]
    assert not any(str(n.target).startswith("aten.index") for n in program.graph.nodes)
    # the exported program serves another scan size
    y = random_sparse(45, 3, seed=13)
    with torch.no_grad():
        np.testing.assert_allclose(program.module()(y.feats, y.coords).numpy(),
                                   net(y.feats, y.coords).numpy(), rtol=1e-6)


def test_bad_inputs_raise_one_line_errors():
    layer = enn.SubMConv3d(3, 4, 3)
    x = random_sparse(10, 3)
    dup = enn.SparseTensor(x.feats, torch.cat([x.coords[:9], x.coords[:1]]))
    with pytest.raises(BadInputError, match="duplicate coordinate"):
        layer(dup)
    neg = enn.SparseTensor(x.feats, x.coords.clone())
    neg.coords[3, 2] = -1
    with pytest.raises(BadInputError, match="negative coordinate"):
        layer(neg)
    with pytest.raises(BadInputError, match="channel mismatch"):
        enn.SubMConv3d(5, 4, 3)(x)
    with pytest.raises(BadInputError, match="feature rows"):
        layer(enn.SparseTensor(x.feats[:5], x.coords))
    with pytest.raises(BadInputError, match="outside batch_size"):
        enn.SparseToDense((2, 2, 2))(x)
    with pytest.raises(BadInputError, match=r"points must be \[P, 3\+F\]"):
        enn.Voxelize((1, 1, 1), (0, 0, 0, 1, 1, 1), 10)(torch.zeros(4, 2))
    with pytest.raises(ValueError, match="subm needs stride 1"):
        enn.SparseConv3d(3, 4, 2, subm=True)


def test_deterministic_across_threads():
    # spconv's CPU path races with several threads; ours must give bit-identical results
    x = random_sparse(400, 8, batches=2, seed=14)
    layer = enn.SparseConv3d(8, 16, 3, stride=2, padding=1)
    before = torch.get_num_threads()
    try:
        outs = []
        for threads in (1, 2, 2, 2):
            torch.set_num_threads(threads)
            with torch.no_grad():
                outs.append(layer(x).feats)
    finally:
        torch.set_num_threads(before)
    assert all(torch.equal(outs[0], o) for o in outs[1:])


# -- ONNX export -----------------------------------------------------------------------------------


class _ExportNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.vox = enn.Voxelize((0.5, 0.5, 0.5), (0.0, 0.0, 0.0, 4.0, 4.0, 3.0), 300)
        self.sub = enn.SubMConv3d(4, 5, 3, bias=False)
        self.down = enn.SparseConv3d(5, 6, 3, stride=2, padding=1, spatial_shape=(8, 8, 6))
        self.up = enn.SparseInverseConv3d(6, 3, 3, stride=2, padding=1)
        self.dense = enn.SparseToDense((4, 4, 3))

    def forward(self, points):
        x = self.sub(self.vox(points))
        y = self.down(x)
        return self.dense(y), self.up(y, x).feats


def _reference_ops():
    """onnx.reference kernels for the edgec domain, backed by the numpy reference."""
    from onnx.reference.op_run import OpRun

    class SparseConv3d(OpRun):
        op_domain = "edgec"

        def _run(self, feats, coords, weight, bias=None, out_coords=None, kernel_size=None, stride=None,
                 dilation=None, padding=None, subm=0, inverse=0, spatial_shape=None):
            return ref.sparse_conv3d(feats, coords, weight, bias, kernel_size=kernel_size, stride=stride,
                                     dilation=dilation, padding=padding, subm=bool(subm), inverse=bool(inverse),
                                     spatial_shape=spatial_shape, out_coords=out_coords)

    class SparseToDense(OpRun):
        op_domain = "edgec"

        def _run(self, feats, coords, spatial_shape=None, batch_size=None):
            return (ref.sparse_to_dense(feats, coords, spatial_shape, batch_size),)

    class Voxelize(OpRun):
        op_domain = "edgec"

        def _run(self, points, voxel_size=None, point_range=None, max_voxels=None):
            return ref.voxelize(points, voxel_size, point_range, max_voxels)

    return [SparseConv3d, SparseToDense, Voxelize]


def test_export_onnx_structure_and_values(tmp_path):
    import onnx
    from onnx.reference import ReferenceEvaluator

    torch.manual_seed(5)
    net = _ExportNet()
    rng = np.random.default_rng(0)
    points = torch.from_numpy(rng.uniform(-0.5, 4.5, (800, 4)).astype(np.float32))
    path = tmp_path / "sparse.onnx"
    model = enn.export_onnx(net, (points,), path, output_names=["bev", "seg"])
    onnx.checker.check_model(model)
    assert model.ir_version == 10
    assert {(o.domain, o.version) for o in model.opset_import} >= {("edgec", 1)}
    nodes = [(n.domain, n.op_type) for n in model.graph.node]
    assert nodes == [("edgec", "Voxelize"), ("edgec", "SparseConv3d"), ("edgec", "SparseConv3d"),
                     ("edgec", "SparseToDense"), ("edgec", "SparseConv3d")]
    attrs = [{a.name: onnx.helper.get_attribute_value(a) for a in n.attribute} for n in model.graph.node]
    assert attrs[0] == {"voxel_size": [0.5] * 3, "point_range": [0.0, 0.0, 0.0, 4.0, 4.0, 3.0], "max_voxels": 300}
    assert attrs[1] == {"kernel_size": [3] * 3, "stride": [1] * 3, "dilation": [1] * 3, "padding": [0] * 3,
                        "subm": 1, "inverse": 0}
    assert attrs[2]["spatial_shape"] == [8, 8, 6] and attrs[2]["stride"] == [2] * 3
    assert attrs[3] == {"spatial_shape": [4, 4, 3], "batch_size": 1}
    assert attrs[4]["inverse"] == 1
    conv_inputs = [list(n.input) for n in model.graph.node if n.op_type == "SparseConv3d"]
    assert len(conv_inputs[0]) == 3                                    # no bias, no out_coords
    assert len(conv_inputs[1]) == 4                                    # bias
    assert conv_inputs[2][4] == model.graph.node[1].output[1]          # out_coords = the subm's coords
    seg = model.graph.output[1].type.tensor_type.shape.dim
    assert seg[0].dim_param and seg[1].dim_value == 3
    # values: the exported graph run by ONNX's reference evaluator on the numpy reference ops
    other = torch.from_numpy(rng.uniform(-0.5, 4.5, (600, 4)).astype(np.float32))  # another scan size
    got = ReferenceEvaluator(model, new_ops=_reference_ops()).run(None, {"points": other.numpy()})
    with torch.no_grad():
        want = net(other)
    np.testing.assert_allclose(got[0], want[0].numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(got[1], want[1].numpy(), rtol=1e-4, atol=1e-5)


def test_compiled_module_on_feats_and_coords():
    """The torch frontend on a module taking (feats, coords): one artifact, two scan sizes."""
    import edgec

    torch.manual_seed(6)
    net = _UNetish().eval()
    art = edgec.compile(net, target="host", layout="none",
                        inputs={"feats": (("N", 3), "float32"), "coords": (("N", 4), "int32")})
    for n, seed in ((60, 1), (90, 2)):
        x = random_sparse(n, 3, batches=2, seed=seed)
        (got,) = art.run({"feats": x.feats.numpy(), "coords": x.coords.numpy()}).values()
        with torch.no_grad():
            want = net(x.feats, x.coords).numpy()
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
