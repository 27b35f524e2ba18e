"""Layout planning: numerics against onnxruntime with the planner on and off, and the reported
counts of standalone layout transforms against an independent count read from the executable."""

from __future__ import annotations

import os
import re
import sys
import tempfile

import numpy as np
import onnx
import pytest
import tvm
from onnx import TensorProto, helper, numpy_helper
from tvm import relax

import edgec
from edgec.artifact import LIBRARY

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "examples"))
import layout_models  # noqa: E402

# kernels whose every fused part only moves data (names as FuseOps/FuseTIR write them)
_MOVERS = {"transpose", "reshape", "layouttransform", "permutedims", "squeeze", "expanddims", "flatten"}


def executable_layout_kernels(art) -> int:
    """Calls, in the built VM executable, of kernels made only of layout movers, by kernel name."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.so")
        with open(path, "wb") as f:
            f.write(art.files[LIBRARY])
        text = relax.VMExecutable(tvm.runtime.load_module(path)).as_text()
    count = 0
    for name in re.findall(r"^\s*call\s+(\S+)\s+in:", text, flags=re.M):
        if name.startswith("vm."):
            continue
        name = name.replace("layout_transform", "layouttransform").replace("permute_dims", "permutedims")
        name = name.replace("expand_dims", "expanddims")
        parts = [re.sub(r"\d+$", "", p) for p in name.removeprefix("fused_").split("_")]
        count += all(p in _MOVERS for p in parts)
    return count


def _ort(path_or_model, feeds):
    import onnxruntime as ort

    data = path_or_model if isinstance(path_or_model, str) else path_or_model.SerializeToString()
    return ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, feeds)


@pytest.fixture(scope="module")
def example_paths(tmp_path_factory):
    return layout_models.export_all(str(tmp_path_factory.mktemp("layout_models")))


@pytest.mark.parametrize("name", layout_models.MODELS)
def test_example_matches_onnxruntime_and_counts_hold(name, example_paths):
    x = layout_models.example_input(name)
    (want,) = _ort(example_paths[name], {"x": x})
    counts = {}
    for layout in ("none", "auto"):
        art = edgec.compile(example_paths[name], layout=layout)
        np.testing.assert_allclose(art.run({"x": x})["y"], want, rtol=1e-4, atol=1e-4)
        reported = art.report.layout_transforms
        assert art.manifest["layout_transforms"] == reported
        assert reported["after"] == executable_layout_kernels(art), f"{name} {layout}: {reported}"
        counts[layout] = reported
    assert counts["auto"]["before"] == counts["none"]["after"]
    assert counts["auto"]["after"] <= counts["auto"]["before"]


def test_transformer_loses_every_head_transpose(example_paths):
    """Head splits and merges fold into the matmuls that read them; the K^T transpose, which a
    matmul would read with a stride, is stored transposed by the K projection instead."""
    counts = edgec.compile(example_paths["transformer"]).report.layout_transforms
    assert counts["before"] >= 4 and counts["after"] == 0, counts


def test_nhwc_input_transpose_disappears(example_paths):
    counts = edgec.compile(example_paths["nhwc"]).report.layout_transforms
    assert counts == {"before": 1, "after": 0}


def _graph(nodes, shape=(1, 8, 6, 6), out_shape=None, inits=()):
    model = helper.make_model(
        helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape or shape)],
                          initializer=list(inits)),
        opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10
    return model


def _planned(model) -> tvm.IRModule:
    from edgec.frontend import import_model
    from edgec.passes import PlanLayout

    return PlanLayout(tvm.target.Target("llvm"))(import_model(model, None, None).mod)


def _planned_ops(model) -> set[str]:
    from edgec.frontend import import_model
    from edgec.passes import PlanLayout

    mod = import_model(model, None, None).mod
    mod = PlanLayout(tvm.target.Target("llvm"))(mod)
    ops = set()
    relax.analysis.post_order_visit(
        mod["main"], lambda e: ops.add(e.op.name) if isinstance(e, relax.Call) and isinstance(e.op, tvm.ir.Op) else None)
    return ops


def test_layout_agnostic_graph_gets_no_transforms():
    scale = onnx.numpy_helper.from_array(np.full((1, 8, 1, 1), 0.5, np.float32), "s")
    model = _graph([helper.make_node("Relu", ["x"], ["a"]), helper.make_node("Mul", ["a", "s"], ["b"]),
                    helper.make_node("Sigmoid", ["b"], ["c"]), helper.make_node("Add", ["c", "x"], ["y"])],
                   inits=[scale])
    ops = _planned_ops(model)
    assert not ops & {"relax.permute_dims", "relax.layout_transform"}, ops
    x = np.random.default_rng(0).standard_normal((1, 8, 6, 6)).astype("float32")
    art = edgec.compile(model, layout="auto")
    np.testing.assert_allclose(art.run({"x": x})["y"], _ort(model, {"x": x})[0], rtol=1e-5, atol=1e-6)
    assert art.report.layout_transforms == {"before": 0, "after": 0}
    assert executable_layout_kernels(art) == 0


def test_cancelling_transpose_pair_disappears():
    model = _graph([helper.make_node("Transpose", ["x"], ["a"], perm=[0, 2, 3, 1]),
                    helper.make_node("Transpose", ["a"], ["b"], perm=[0, 3, 1, 2]),
                    helper.make_node("Relu", ["b"], ["y"])])
    assert "relax.permute_dims" not in _planned_ops(model)
    x = np.random.default_rng(1).standard_normal((1, 8, 6, 6)).astype("float32")
    art = edgec.compile(model, layout="auto")
    np.testing.assert_allclose(art.run({"x": x})["y"], _ort(model, {"x": x})[0])
    assert art.report.layout_transforms["after"] == 0 == executable_layout_kernels(art)


def test_composing_transposes_leave_one_kernel():
    model = _graph([helper.make_node("Transpose", ["x"], ["a"], perm=[0, 2, 3, 1]),
                    helper.make_node("Transpose", ["a"], ["y"], perm=[0, 2, 1, 3])], out_shape=(1, 6, 6, 8))
    ops = _planned_ops(model)
    assert "relax.permute_dims" in ops
    x = np.random.default_rng(2).standard_normal((1, 8, 6, 6)).astype("float32")
    art = edgec.compile(model, layout="auto")
    np.testing.assert_allclose(art.run({"x": x})["y"], _ort(model, {"x": x})[0])
    assert art.report.layout_transforms["after"] == 1 == executable_layout_kernels(art)


def test_variadic_sum_becomes_adds_and_the_conv_is_converted():
    w = onnx.numpy_helper.from_array(np.random.default_rng(3).standard_normal((8, 8, 3, 3)).astype("float32"), "w")
    model = _graph([helper.make_node("Conv", ["x", "w"], ["a"], pads=[1, 1, 1, 1]),
                    helper.make_node("Relu", ["a"], ["b"]), helper.make_node("Sigmoid", ["a"], ["c"]),
                    helper.make_node("Sum", ["a", "b", "c"], ["y"])], inits=[w])
    ops = _planned_ops(model)
    assert "relax.stack" not in ops and "relax.nn.conv2d" in ops
    assert 'data_layout="NHWC"' in _planned(model)["main"].script()  # 72 MACs per output: worth it
    x = np.random.default_rng(4).standard_normal((1, 8, 6, 6)).astype("float32")
    art = edgec.compile(model, layout="auto")
    np.testing.assert_allclose(art.run({"x": x})["y"], _ort(model, {"x": x})[0], rtol=1e-4, atol=1e-4)
    counts = art.report.layout_transforms
    assert counts["after"] <= counts["before"] and counts["after"] == executable_layout_kernels(art)


LIGHT = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["squeezenet", "shufflenet", "inception_v1"])
def test_light_models_no_more_transforms_with_planner(name):
    model = onnx.load(os.path.join(LIGHT, f"light_{name}.onnx"))
    model.ir_version = min(model.ir_version, 10)
    inits = {i.name for i in model.graph.initializer}
    feeds = {}
    for value in model.graph.input:
        if value.name not in inits:
            shape = tuple(d.dim_value or 1 for d in value.type.tensor_type.shape.dim)
            feeds[value.name] = np.random.default_rng(0).uniform(0, 1, shape).astype("float32")
    outs = {layout: edgec.compile(model, layout=layout) for layout in ("none", "auto")}
    got = {layout: list(a.run(feeds).values())[0] for layout, a in outs.items()}
    np.testing.assert_allclose(got["auto"], got["none"], rtol=1e-4, atol=1e-5)
    counts = outs["auto"].report.layout_transforms
    assert counts["after"] <= counts["before"], counts
    assert counts["after"] == executable_layout_kernels(outs["auto"])


def test_fused_qkv_projection_is_split_and_every_transpose_folds(tmp_path):
    """The suite's transformer (examples/models.py) exports one QKV projection, a 5-D head permute
    read by three Gathers, and a symbolic batch. Planned, each of q, k, v is its own projection,
    no standalone transpose is left, and the outputs match onnxruntime at two batch sizes."""
    import models

    path = models.export_onnx("transformer", str(tmp_path / "transformer.onnx"))
    art = edgec.compile(path, "host")
    counts = art.report.layout_transforms
    assert counts["before"] >= 1 and counts["after"] == 0 == executable_layout_kernels(art), counts
    for batch in (1, 2):
        tokens = models.example_input("transformer", batch=batch, seed=batch)
        (want,) = _ort(path, {"tokens": tokens})
        np.testing.assert_allclose(list(art.run({"tokens": tokens}).values())[0], want, rtol=1e-4, atol=1e-4)


def test_split_projections_keeps_a_projection_that_is_also_read_whole():
    """A projection that is sliced *and* used whole stays one projection (splitting would compute
    it twice); the result still matches onnxruntime."""
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((8, 12)).astype(np.float32), "w")
    nodes = [helper.make_node("MatMul", ["x", "w"], ["p"]),
             helper.make_node("Reshape", ["p", "shape"], ["r"]),
             helper.make_node("Gather", ["r", "one"], ["g"], axis=2),
             helper.make_node("ReduceSum", ["p", "axes"], ["s"], keepdims=1),
             helper.make_node("Add", ["g", "s"], ["y"])]
    inits = [w, numpy_helper.from_array(np.array([2, 5, 3, 4], np.int64), "shape"),
             numpy_helper.from_array(np.array(1, np.int64), "one"), numpy_helper.from_array(np.array([2], np.int64), "axes")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 5, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 5, 4])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10
    from edgec.frontend import import_model
    from edgec.passes.split_projections import split_projections

    mod = split_projections(import_model(model, None, None).mod)
    matmuls = []
    relax.analysis.post_order_visit(mod["main"], lambda e: matmuls.append(e) if isinstance(e, relax.Call) and getattr(e.op, "name", "") == "relax.matmul" else None)
    assert len(matmuls) == 1
    x = rng.standard_normal((2, 5, 8)).astype(np.float32)
    (want,) = _ort(model, {"x": x})
    np.testing.assert_allclose(list(edgec.compile(model, "host").run({"x": x}).values())[0], want, rtol=1e-5, atol=1e-5)
