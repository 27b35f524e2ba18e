"""The ONNX frontend: loading, checking, pinning, folding shape subgraphs, unsupported ops."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from tvm import relax

import edgec
from edgec.errors import InputError, ModelError, UnsupportedOperatorError
from edgec.frontend import onnx_simplify
from edgec.frontend.onnx import import_onnx, parse
from edgec.signature import parse_input_option

from conftest import mlp_model, save_model


def _ort(model, feeds):
    model.ir_version = 10
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def _shape_chain_model() -> onnx.ModelProto:
    """Reshape whose target shape is computed from the input: Shape→Gather→Unsqueeze→Concat→Reshape."""
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Gather", ["s", "zero"], ["n"], axis=0),
        helper.make_node("Unsqueeze", ["n", "axes0"], ["n1"]),
        helper.make_node("Concat", ["n1", "minus1"], ["shape"], axis=0),
        helper.make_node("Reshape", ["x", "shape"], ["flat"]),
        helper.make_node("Relu", ["flat"], ["y"]),
    ]
    inits = [
        numpy_helper.from_array(np.array(0, np.int64), "zero"),
        numpy_helper.from_array(np.array([0], np.int64), "axes0"),
        numpy_helper.from_array(np.array([-1], np.int64), "minus1"),
    ]
    graph = helper.make_graph(
        nodes, "chain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 4, 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", "M"])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_shape_subgraph_is_folded_once_dims_are_pinned():
    model = _shape_chain_model()
    from edgec.frontend.onnx import pin_inputs

    pin_inputs(model, {"x": parse_input_option("x:2x3x4x5")})
    simplified = onnx_simplify.simplify(model)
    ops = [n.op_type for n in simplified.graph.node]
    assert ops == ["Reshape", "Relu"], ops
    shape = next(i for i in simplified.graph.initializer if i.name == "shape")
    np.testing.assert_array_equal(numpy_helper.to_array(shape), [2, -1])


def test_shape_chain_model_compiles_and_matches_onnxruntime(tmp_path):
    path = save_model(_shape_chain_model(), tmp_path / "chain.onnx")
    art = edgec.compile(path, "host", inputs={"x": ((2, 3, 4, 5), "float32")})
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 5)).astype(np.float32)
    (want,) = _ort(_shape_chain_model(), {"x": x})
    np.testing.assert_allclose(art.run({"x": x})["y"], want, rtol=1e-5, atol=1e-6)


def test_symbolic_batch_runs_at_two_sizes(mlp_path):
    art = edgec.compile(mlp_path, "host")
    assert art.inputs[0].shape == ("N", 16)
    for n in (1, 7):
        x = np.random.default_rng(n).standard_normal((n, 16)).astype(np.float32)
        (want,) = _ort(mlp_model(), {"x": x})
        np.testing.assert_allclose(art.run({"x": x})["y"], want, rtol=1e-4, atol=1e-5)


def test_pinned_input_is_static_and_rejects_other_sizes(mlp_path):
    art = edgec.compile(mlp_path, "host", inputs={"x": "3x16"})
    assert art.inputs[0].shape == (3, 16)
    with pytest.raises(InputError, match="does not match"):
        art.run({"x": np.zeros((4, 16), np.float32)})


def test_unsupported_operators_are_all_named_in_one_message(tmp_path):
    nodes = [
        helper.make_node("Relu", ["x"], ["a"], name="ok"),
        helper.make_node("FancyOp", ["a"], ["b"], name="first_bad", domain="com.example"),
        helper.make_node("OtherOp", ["b"], ["y"], name="second_bad", domain="com.example"),
    ]
    graph = helper.make_graph(
        nodes, "bad",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 3)])
    with pytest.raises(UnsupportedOperatorError) as info:
        import_onnx(model)
    message = str(info.value)
    for part in ("FancyOp", "first_bad", "OtherOp", "second_bad", "opset 3"):
        assert part in message
    assert "\n" not in message


@pytest.mark.parametrize("cut", [10, 100, 400])
def test_truncated_model_is_a_model_error(tmp_path, cut):
    data = mlp_model().SerializeToString()
    with pytest.raises(ModelError, match="truncated|not an ONNX|checker"):
        parse(data[:cut], "cut.onnx")


def test_initializer_that_lies_about_its_shape_is_refused():
    model = mlp_model()
    w = model.graph.initializer[0]
    w.dims[0] = 1 << 20
    with pytest.raises(ModelError, match="declares shape"):
        parse(model.SerializeToString(), "lies.onnx")


def test_huge_declared_dimension_is_refused_before_allocation():
    model = mlp_model()
    w = model.graph.initializer[0]
    del w.dims[:]
    w.dims.extend([1 << 20, 1 << 20])
    with pytest.raises(ModelError, match="too large"):
        parse(model.SerializeToString(), "huge.onnx")


def test_wrong_input_name_lists_the_real_inputs(mlp_path):
    with pytest.raises(InputError, match=r"\['x'\]"):
        edgec.compile(mlp_path, "host", inputs={"image": "1x16"})


def test_input_rank_and_dtype_mismatch(mlp_path):
    with pytest.raises(InputError, match="rank"):
        edgec.compile(mlp_path, "host", inputs={"x": "1x16x1"})
    with pytest.raises(InputError, match="dtype"):
        edgec.compile(mlp_path, "host", inputs={"x": "1x16:int32"})


def _qkv_gather_model(indices) -> onnx.ModelProto:
    """x[batch, 3, 4] → Gather(axis=1) with constant ``indices`` → y; the batch is symbolic."""
    nodes = [helper.make_node("Gather", ["x", "idx"], ["g"], axis=1, name="pick"),
             helper.make_node("Relu", ["g"], ["y"])]
    idx = numpy_helper.from_array(np.array(indices, np.int64), "idx")
    out_shape = ["batch"] + list(np.shape(indices)) + [4]
    graph = helper.make_graph(nodes, "gather", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)], [idx])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("indices", [-1, 1, [2, -3, 0]])
def test_constant_gather_under_symbolic_batch_resolves_indices_at_import(indices):
    """Negative constant indices are resolved when the model is imported: the executable runs no
    shape kernels for them, and the result matches onnxruntime at two batch sizes."""
    model = _qkv_gather_model(indices)
    art = edgec.compile(model, "host")
    mod = import_onnx(model, None).mod
    ops = set()
    relax.analysis.post_order_visit(mod["main"], lambda e: ops.add(e.op.name) if isinstance(e, relax.Call) and hasattr(e.op, "name") else None)
    assert "relax.shape_to_tensor" not in ops and "relax.where" not in ops, ops
    for batch in (1, 3):
        x = np.random.default_rng(batch).standard_normal((batch, 3, 4)).astype(np.float32)
        np.testing.assert_array_equal(list(art.run({"x": x}).values())[0], _ort(model, {"x": x})[0])


def test_constant_gather_index_out_of_range_names_the_node():
    with pytest.raises(ModelError, match=r"node 'pick' \(Gather\).*index 3 is out of range for axis 1 of extent 3"):
        edgec.compile(_qkv_gather_model(3), "host")
