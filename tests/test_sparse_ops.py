"""Sparse operators (edgec ONNX domain) compiled for the host against the numpy reference."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import edgec
from edgec.errors import EdgecError
from edgec.passes.sparse_conv import reference as ref

FLOWS = ("implicit_gemm", "gather_scatter")


def _coords(rng, n, batches=2, extent=10):
    c = rng.integers(0, extent, (n, 4))
    c[:, 0] %= batches
    c = np.unique(c, axis=0).astype(np.int32)
    rng.shuffle(c)  # the kernels must not rely on sorted input rows
    return c


def _model(nodes, inputs, outputs, weights):
    graph = helper.make_graph(
        nodes, "sparse",
        [helper.make_tensor_value_info(n, t, s) for n, t, s in inputs],
        [helper.make_tensor_value_info(n, t, s) for n, t, s in outputs],
        initializer=[numpy_helper.from_array(v, k) for k, v in weights.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("edgec", 1)])
    model.ir_version = 10
    return model


def _conv(inputs, outputs, name, **attrs):
    return helper.make_node("SparseConv3d", inputs, outputs, name=name, domain="edgec", **attrs)


def _sparse_inputs(cin, dtype=TensorProto.FLOAT):
    return [("feats", dtype, ["n", cin]), ("coords", TensorProto.INT32, ["n", 4])]


VARIANTS = {
    "subm": dict(kernel_size=[3, 3, 3], subm=1),
    "subm_dilated": dict(kernel_size=[3, 3, 3], subm=1, dilation=[2, 1, 2]),
    "subm_k5x3x1": dict(kernel_size=[5, 3, 1], subm=1),
    "strided": dict(kernel_size=[3, 3, 3], stride=[2, 2, 2], padding=[1, 1, 1]),
    "strided_spatial_shape": dict(kernel_size=[2, 3, 3], stride=[2, 2, 1], padding=[0, 1, 0], spatial_shape=[10, 10, 10]),
    "strided_dilated": dict(kernel_size=[3, 3, 3], stride=[2, 2, 2], dilation=[2, 2, 2], padding=[2, 1, 0]),
    "generalized_stride1": dict(kernel_size=[2, 2, 2]),
}


def _ref_kwargs(attrs):
    return {k: v for k, v in attrs.items() if k not in ("dataflow", "activation", "max_points", "kernel_map")}


# auto (merge lookups + hash site dedupe on CPUs) by default; the all-hash and all-sort (GPU
# algorithm) maps on every variant with -m slow, plus one variant of each by default
@pytest.mark.parametrize("kernel_map", ["auto", pytest.param("hash", marks=pytest.mark.slow),
                                        pytest.param("sort", marks=pytest.mark.slow)])
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_conv_matches_reference_both_dataflows(variant, kernel_map, cin=3, cout=7):  # odd channel counts
    attrs = dict(VARIANTS[variant], kernel_map=kernel_map)
    rng = np.random.default_rng(len(variant))
    w = rng.standard_normal((*attrs["kernel_size"], cin, cout)).astype(np.float32)
    b = rng.standard_normal(cout).astype(np.float32)
    nodes = [_conv(["feats", "coords", "w", "b"], [f"out_{f}", f"oc_{f}"], f, dataflow=f, **attrs) for f in FLOWS]
    outputs = [(f"{k}_{f}", t, ["m", c]) for f in FLOWS for k, t, c in
               (("out", TensorProto.FLOAT, cout), ("oc", TensorProto.INT32, 4))]
    art = edgec.compile(_model(nodes, _sparse_inputs(cin), outputs, {"w": w, "b": b}), target="host")
    for n, batches in ((300, 3), (40, 1), (0, 1)):  # one artifact, several point counts (an empty scan too)
        coords = _coords(rng, n, batches)
        feats = rng.standard_normal((len(coords), cin)).astype(np.float32)
        got = art.run({"feats": feats, "coords": coords})
        want, want_c = ref.sparse_conv3d(feats, coords, w, b, **_ref_kwargs(attrs))
        for f in FLOWS:
            np.testing.assert_array_equal(got[f"oc_{f}"], want_c)
            np.testing.assert_allclose(got[f"out_{f}"], want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("kernel_map", ["hash", "sort"])
def test_strided_dilated_with_each_kernel_map(kernel_map):
    test_conv_matches_reference_both_dataflows("strided_dilated", kernel_map)


@pytest.mark.parametrize("variant", ["subm_dilated", "strided_spatial_shape"])
def test_gpu_lookup_algorithm_on_the_cpu(variant, monkeypatch):
    # the binary-search lookups and sort-based sites that CUDA targets use, run here on the CPU
    from edgec.passes.sparse_conv import ops

    monkeypatch.setattr(ops, "_LOOKUP_OVERRIDE", "search")
    test_conv_matches_reference_both_dataflows(variant, "auto")


@pytest.mark.parametrize("variant, cin, cout", [("subm", 40, 48), ("strided", 36, 36), ("subm_dilated", 24, 80)])
def test_wide_channels_use_register_tiles(variant, cin, cout):
    # Cin·Cout >= 1024: the tiled CPU kernels, with 16-lane blocks (48, 80) and odd lanes (36)
    test_conv_matches_reference_both_dataflows(variant, "auto", cin, cout)


def test_inverse_restores_coordinates_and_fuses_relu():
    rng = np.random.default_rng(7)
    cin, cmid, cout = 4, 6, 5
    w1 = rng.standard_normal((2, 2, 2, cin, cmid)).astype(np.float32)
    w2 = rng.standard_normal((3, 3, 3, cmid, cout)).astype(np.float32)
    b2 = rng.standard_normal(cout).astype(np.float32)
    down = dict(kernel_size=[2, 2, 2], stride=[2, 2, 2])
    up = dict(kernel_size=[3, 3, 3], stride=[2, 2, 2], padding=[1, 1, 1], inverse=1)
    nodes = [_conv(["feats", "coords", "w1"], ["d", "dc"], "down", **down)]
    nodes += [_conv(["d", "dc", "w2", "b2", "coords"], [f"u_{f}", f"uc_{f}"], f"up_{f}", dataflow=f,
                    activation="ReLU", **up) for f in FLOWS]
    outputs = [(f"u_{f}", TensorProto.FLOAT, ["n", cout]) for f in FLOWS]
    art = edgec.compile(_model(nodes, _sparse_inputs(cin), outputs, {"w1": w1, "w2": w2, "b2": b2}), target="host")
    coords = _coords(rng, 400, batches=2, extent=12)
    feats = rng.standard_normal((len(coords), cin)).astype(np.float32)
    got = art.run({"feats": feats, "coords": coords})
    d, dc = ref.sparse_conv3d(feats, coords, w1, **down)
    want, _ = ref.sparse_conv3d(d, dc, w2, b2, out_coords=coords, **up)
    for f in FLOWS:
        np.testing.assert_allclose(got[f"u_{f}"], np.maximum(want, 0), rtol=1e-4, atol=1e-4)


def test_float16_features():
    rng = np.random.default_rng(3)
    w = (rng.standard_normal((3, 3, 3, 5, 3)) * 0.2).astype(np.float16)
    nodes = [_conv(["feats", "coords", "w"], ["o", "oc"], "c", kernel_size=[3, 3, 3], subm=1)]
    art = edgec.compile(_model(nodes, _sparse_inputs(5, TensorProto.FLOAT16),
                               [("o", TensorProto.FLOAT16, ["n", 3])], {"w": w}), target="host")
    coords = _coords(rng, 200)
    feats = rng.standard_normal((len(coords), 5)).astype(np.float16)
    want, _ = ref.sparse_conv3d(feats.astype(np.float32), coords, w.astype(np.float32), kernel_size=3, subm=True)
    np.testing.assert_allclose(art.run({"feats": feats, "coords": coords})["o"].astype(np.float32), want,
                               rtol=1e-2, atol=1e-2)


def test_layers_sharing_coordinates_share_one_kernel_map():
    from edgec.frontend import import_model

    rng = np.random.default_rng(0)
    w = rng.standard_normal((3, 3, 3, 4, 4)).astype(np.float32)
    nodes = [_conv(["feats", "coords", "w"], ["a", "ac"], "c1", kernel_size=[3, 3, 3], subm=1),
             _conv(["a", "ac", "w"], ["b", "bc"], "c2", kernel_size=[3, 3, 3], subm=1),
             _conv(["b", "coords", "w"], ["c", "cc"], "c3", kernel_size=[3, 3, 3], subm=1, dataflow="gather_scatter"),
             _conv(["c", "coords", "w"], ["d", "dc"], "c4", kernel_size=[3, 3, 3], subm=1, dilation=[2, 2, 2])]
    model = _model(nodes, _sparse_inputs(4), [("d", TensorProto.FLOAT, ["n", 4])], {"w": w})
    text = import_model(model, None).mod.script()
    # one sorted index of the coordinates, one map per geometry (plain and dilated), four convs
    assert text.count("R.call_tir(cls.sparse_pack_keys") == 1
    assert text.count("R.call_tir(cls.sparse_neighbor_merge") == 2
    assert text.count("R.call_tir(cls.sparse_conv_") == 4


def test_sparse_to_dense_and_voxelize():
    rng = np.random.default_rng(5)
    vsize, prange, maxv = [0.3, 0.25, 0.5], [-1.0, -1.0, -1.0, 1.0, 1.5, 1.0], 25
    nodes = [helper.make_node("Voxelize", ["points"], ["vf", "vc"], domain="edgec", voxel_size=vsize,
                              point_range=prange, max_voxels=maxv),
             helper.make_node("SparseToDense", ["vf", "vc"], ["dense"], domain="edgec",
                              spatial_shape=[7, 10, 4], batch_size=1)]
    outputs = [("vf", TensorProto.FLOAT, ["v", 5]), ("vc", TensorProto.INT32, ["v", 4]),
               ("dense", TensorProto.FLOAT, [1, 5, 7, 10, 4])]
    art = edgec.compile(_model(nodes, [("points", TensorProto.FLOAT, ["p", 5])], outputs, {}), target="host")
    for count in (600, 7, 0):
        points = (rng.random((count, 5)) * 3 - 1.2).astype(np.float32)
        got = art.run({"points": points})
        want_f, want_c = ref.voxelize(points, vsize, prange, maxv)
        np.testing.assert_array_equal(got["vc"], want_c)
        np.testing.assert_allclose(got["vf"], want_f, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(got["dense"], ref.sparse_to_dense(want_f, want_c, (7, 10, 4), 1), atol=1e-6)


# -- bad input ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_artifact():
    w = np.ones((3, 3, 3, 2, 2), np.float32)
    nodes = [_conv(["feats", "coords", "w"], ["o", "oc"], "c", kernel_size=[3, 3, 3], subm=1, max_points=64)]
    return edgec.compile(_model(nodes, _sparse_inputs(2), [("o", TensorProto.FLOAT, ["n", 2])], {"w": w}),
                         target="host")


def test_bad_runtime_inputs_are_clear_errors(small_artifact):
    rng = np.random.default_rng(1)
    coords = _coords(rng, 50, extent=6)
    feats = np.ones((len(coords), 2), np.float32)
    small_artifact.run({"feats": feats, "coords": coords})  # valid input runs
    dup = coords.copy()
    dup[5] = dup[9]
    with pytest.raises(EdgecError, match="duplicate coordinates"):
        small_artifact.run({"feats": feats, "coords": dup})
    neg = coords.copy()
    neg[3, 2] = -4
    with pytest.raises(EdgecError, match="non-negative"):
        small_artifact.run({"feats": feats, "coords": neg})
    big = coords.copy()
    big[0, 0] = 40000
    with pytest.raises(EdgecError, match="batch index"):
        small_artifact.run({"feats": feats, "coords": big})
    big[0, 0], big[0, 3] = 0, 70000
    with pytest.raises(EdgecError, match="below 65536"):
        small_artifact.run({"feats": feats, "coords": big})
    many = _coords(rng, 400, extent=10)[:100]
    with pytest.raises(EdgecError, match="declared maximum"):
        small_artifact.run({"feats": np.ones((len(many), 2), np.float32), "coords": many})
    with pytest.raises(EdgecError, match="dimension 'n'"):
        small_artifact.run({"feats": feats[:-1], "coords": coords})


@pytest.mark.parametrize("case", ["channels", "kernel", "coords_dtype", "subm_stride", "inverse_no_out"])
def test_bad_models_fail_at_compile_time(case):
    w = np.ones((3, 3, 3, 2, 2), np.float32)
    attrs = dict(kernel_size=[3, 3, 3], subm=1)
    inputs = _sparse_inputs(2)
    if case == "channels":
        inputs = _sparse_inputs(5)
    elif case == "kernel":
        attrs["kernel_size"] = [3, 3, 1]
    elif case == "coords_dtype":
        inputs = [inputs[0], ("coords", TensorProto.FLOAT, ["n", 4])]
    elif case == "subm_stride":
        attrs["stride"] = [2, 2, 2]
    else:
        attrs = dict(kernel_size=[3, 3, 3], inverse=1)
    nodes = [_conv(["feats", "coords", "w"], ["o", "oc"], "bad", **attrs)]
    model = _model(nodes, inputs, [("o", TensorProto.FLOAT, ["m", 2])], {"w": w})
    with pytest.raises(EdgecError) as err:
        edgec.compile(model, target="host")
    assert "\n" not in str(err.value)
    if case == "channels":
        assert "channel mismatch" in str(err.value)


def test_sparse_sample_tunes_dataflow_per_layer_group(tmp_path):
    rng = np.random.default_rng(9)
    w1 = rng.standard_normal((3, 3, 3, 8, 8)).astype(np.float32)
    w2 = rng.standard_normal((2, 2, 2, 8, 16)).astype(np.float32)
    nodes = [_conv(["feats", "coords", "w1"], ["a", "ac"], "c1", kernel_size=[3, 3, 3], subm=1),
             _conv(["a", "ac", "w2"], ["b", "bc"], "c2", kernel_size=[2, 2, 2], stride=[2, 2, 2])]
    model = _model(nodes, _sparse_inputs(8), [("b", TensorProto.FLOAT, ["m", 16])], {"w1": w1, "w2": w2})
    coords = _coords(rng, 3000, extent=24)
    feats = rng.standard_normal((len(coords), 8)).astype(np.float32)
    sample = tmp_path / "sample.npz"
    np.savez(sample, feats=feats, coords=coords)
    art = edgec.compile(model, target="host", sparse_sample=str(sample))
    record = art.manifest["sparse_dataflows"]
    assert set(record["groups"]) == {"k27_8x8_float32", "k8_8x16_float32"}
    assert set(record["groups"].values()) <= set(FLOWS)
    assert all(set(times) == set(FLOWS) for times in record["ms"].values())
    a, ac = ref.sparse_conv3d(feats, coords, w1, kernel_size=3, subm=True)
    want, _ = ref.sparse_conv3d(a, ac, w2, kernel_size=2, stride=2)
    np.testing.assert_allclose(art.run({"feats": feats, "coords": coords})["b"], want, rtol=1e-4, atol=1e-4)
    with pytest.raises(EdgecError, match="target host"):
        edgec.compile(model, target="cuda", sparse_sample=str(sample))


# -- CUDA ----------------------------------------------------------------------------------------


def _cuda_model():
    w = np.random.default_rng(2).standard_normal((3, 3, 3, 4, 4)).astype(np.float32)
    nodes = [_conv(["feats", "coords", "w"], ["a", "ac"], "c1", kernel_size=[3, 3, 3], subm=1, activation="ReLU"),
             _conv(["a", "ac", "w"], ["b", "bc"], "c2", kernel_size=[3, 3, 3], stride=[2, 2, 2], padding=[1, 1, 1],
                   dataflow="gather_scatter"),
             _conv(["b", "bc", "w", "", "coords"], ["c", "cc"], "c3", kernel_size=[3, 3, 3], stride=[2, 2, 2],
                   padding=[1, 1, 1], inverse=1),
             helper.make_node("SparseToDense", ["b", "bc"], ["d"], domain="edgec", spatial_shape=[5, 5, 5],
                              batch_size=2)]
    outputs = [("a", TensorProto.FLOAT, ["n", 4]), ("b", TensorProto.FLOAT, ["m", 4]),
               ("bc", TensorProto.INT32, ["m", 4]), ("c", TensorProto.FLOAT, ["n", 4]),
               ("d", TensorProto.FLOAT, [2, 4, 5, 5, 5])]
    return _model(nodes, _sparse_inputs(4), outputs, {"w": w}), w


def test_sparse_kernels_build_for_cuda():
    import shutil

    from edgec.errors import ToolchainError

    model, _ = _cuda_model()
    if not shutil.which("nvcc"):  # no CUDA toolkit: the compile must name what is missing
        with pytest.raises(ToolchainError, match="nvcc"):
            edgec.compile(model, target="cuda")
        return
    art = edgec.compile(model, target="cuda")
    assert art.manifest["device"] == "cuda"
    from edgec.artifact import LIBRARY

    library = art.files[LIBRARY]
    for kernel in (b"sparse_pack_keys", b"sparse_neighbor_map", b"sparse_conv_implicit_gemm",
                   b"sparse_conv_gather_scatter", b"sparse_unique", b"sparse_to_dense"):
        assert kernel in library


@pytest.mark.gpu
def test_sparse_ops_on_cuda_match_reference():
    model, w = _cuda_model()
    art = edgec.compile(model, target="cuda")
    rng = np.random.default_rng(4)
    coords = _coords(rng, 600, batches=2, extent=10)
    feats = rng.standard_normal((len(coords), 4)).astype(np.float32)
    got = art.run({"feats": feats, "coords": coords})
    a, ac = ref.sparse_conv3d(feats, coords, w, kernel_size=3, subm=True)
    a = np.maximum(a, 0)
    b, bc = ref.sparse_conv3d(a, ac, w, kernel_size=3, stride=2, padding=1)
    c, _ = ref.sparse_conv3d(b, bc, w, kernel_size=3, stride=2, padding=1, inverse=True, out_coords=coords)
    np.testing.assert_allclose(got["a"], a, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(got["bc"], bc)
    np.testing.assert_allclose(got["b"], b, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(got["c"], c, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(got["d"], ref.sparse_to_dense(b, bc, (5, 5, 5), 2), rtol=1e-4, atol=1e-4)


def test_batchnorm_residual_and_relu_fuse_into_the_conv():
    from edgec.frontend import import_model
    from edgec.pipeline import CompileReport, _Phases, lower_imported
    import tvm

    rng = np.random.default_rng(12)
    w1 = rng.standard_normal((3, 3, 3, 4, 6)).astype(np.float32)
    b1 = rng.standard_normal(6).astype(np.float32)
    w2 = rng.standard_normal((3, 3, 3, 6, 6)).astype(np.float32)
    gamma, beta, mean, var = (rng.random(6).astype(np.float32) + 0.5 for _ in range(4))
    nodes = [_conv(["feats", "coords", "w1", "b1"], ["a", "ac"], "c1", kernel_size=[3, 3, 3], subm=1),
             helper.make_node("BatchNormalization", ["a", "g", "be", "mu", "var"], ["abn"], epsilon=1e-5),
             helper.make_node("Relu", ["abn"], ["ar"]),
             _conv(["ar", "coords", "w2"], ["b", "bc"], "c2", kernel_size=[3, 3, 3], subm=1, dataflow="gather_scatter"),
             helper.make_node("Add", ["b", "ar"], ["s"]),
             helper.make_node("Relu", ["s"], ["out"])]
    weights = {"w1": w1, "b1": b1, "w2": w2, "g": gamma, "be": beta, "mu": mean, "var": var}
    model = _model(nodes, _sparse_inputs(4), [("out", TensorProto.FLOAT, ["n", 6])], weights)

    target = tvm.target.Target("llvm")
    with target:
        lowered = lower_imported(import_model(model, None).mod, target, "none", _Phases(CompileReport(), None))
    calls = [gv.name_hint for gv, f in lowered.functions_items() if isinstance(f, tvm.tirx.PrimFunc)]
    # the BatchNorm, both ReLUs and the residual add left no kernels of their own
    assert sorted(n for n in calls if n.startswith("sparse_conv")) == [
        "sparse_conv_gather_scatter_k27_6x6_float32_relu_res", "sparse_conv_implicit_gemm_k27_4x6_float32_relu"]
    # and both convs share one map: pack keys, argsort, sorted keys, map, pair lists, two convs
    assert len(calls) == 7, calls

    art = edgec.compile(model, target="host")
    coords = _coords(rng, 300)
    feats = rng.standard_normal((len(coords), 4)).astype(np.float32)
    a, _ = ref.sparse_conv3d(feats, coords, w1, b1, kernel_size=3, subm=True)
    a = np.maximum((a - mean) / np.sqrt(var + 1e-5) * gamma + beta, 0)
    b, _ = ref.sparse_conv3d(a, coords, w2, kernel_size=3, subm=True)
    np.testing.assert_allclose(art.run({"feats": feats, "coords": coords})["out"], np.maximum(b + a, 0),
                               rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("kernel_map", ["auto", "hash", "sort"])
def test_strided_conv_checks_its_coordinates(kernel_map):
    # a strided conv's map comes from its own site discovery; the checks must still run
    w = np.ones((2, 2, 2, 2, 3), np.float32)
    nodes = [_conv(["feats", "coords", "w"], ["o", "oc"], "down", kernel_size=[2, 2, 2], stride=[2, 2, 2],
                   kernel_map=kernel_map, max_points=64)]
    art = edgec.compile(_model(nodes, _sparse_inputs(2), [("o", TensorProto.FLOAT, ["m", 3])], {"w": w}),
                        target="host")
    coords = _coords(np.random.default_rng(0), 40, extent=6)
    feats = np.ones((len(coords), 2), np.float32)
    art.run({"feats": feats, "coords": coords})
    dup, neg = coords.copy(), coords.copy()
    dup[1] = dup[2]
    neg[0, 1] = -1
    with pytest.raises(EdgecError, match="duplicate"):
        art.run({"feats": feats, "coords": dup})
    with pytest.raises(EdgecError, match="non-negative"):
        art.run({"feats": feats, "coords": neg})
    many = _coords(np.random.default_rng(1), 300, extent=10)[:80]
    with pytest.raises(EdgecError, match="declared maximum"):
        art.run({"feats": np.ones((80, 2), np.float32), "coords": many})


def test_cli_sparse_sample_records_the_choice(tmp_path, capsys):
    import json

    from edgec.cli import main as cli_main

    rng = np.random.default_rng(21)
    w = rng.standard_normal((3, 3, 3, 4, 4)).astype(np.float32)
    nodes = [_conv(["feats", "coords", "w"], ["o", "oc"], "c", kernel_size=[3, 3, 3], subm=1)]
    model = _model(nodes, _sparse_inputs(4), [("o", TensorProto.FLOAT, ["n", 4])], {"w": w})
    path = tmp_path / "sparse.onnx"
    onnx.save(model, str(path))
    coords = _coords(rng, 500)
    np.savez(tmp_path / "sample.npz", feats=rng.standard_normal((len(coords), 4)).astype(np.float32), coords=coords)
    out = tmp_path / "sparse.edgec"
    assert cli_main(["compile", str(path), "-o", str(out), "--sparse-sample", str(tmp_path / "sample.npz"),
                     "--json", "--no-isolate"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report["sparse_dataflows"]["groups"]) == {"k27_4x4_float32"}
    assert edgec.load(str(out)).manifest["sparse_dataflows"] == report["sparse_dataflows"]


def test_parallel_kernels_are_deterministic():
    # spconv's CPU path races with more than one thread; every output row here has one writer
    rng = np.random.default_rng(30)
    w1 = rng.standard_normal((3, 3, 3, 8, 8)).astype(np.float32)
    w2 = rng.standard_normal((3, 3, 3, 8, 8)).astype(np.float32)
    nodes = [_conv(["feats", "coords", "w1"], ["a", "ac"], "s", kernel_size=[3, 3, 3], subm=1,
                   dataflow="gather_scatter"),
             _conv(["a", "ac", "w2"], ["b", "bc"], "d", kernel_size=[3, 3, 3], stride=[2, 2, 2], padding=[1, 1, 1]),
             _conv(["b", "bc", "w2", "", "coords"], ["c", "cc"], "u", kernel_size=[3, 3, 3], stride=[2, 2, 2],
                   padding=[1, 1, 1], inverse=1, dataflow="gather_scatter")]
    art = edgec.compile(_model(nodes, _sparse_inputs(8), [("c", TensorProto.FLOAT, ["n", 8])],
                               {"w1": w1, "w2": w2}), target="host")
    coords = _coords(rng, 20000, batches=2, extent=40)
    feats = rng.standard_normal((len(coords), 8)).astype(np.float32)
    first = art.run({"feats": feats, "coords": coords})["c"]
    for _ in range(8):
        np.testing.assert_array_equal(art.run({"feats": feats, "coords": coords})["c"], first)
