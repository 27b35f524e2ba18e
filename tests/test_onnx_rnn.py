"""The LSTM and GRU converters against onnxruntime, on the options PyTorch's exporter never
writes: peepholes, clip, initial states, layout=1, reverse, ``linear_before_reset=0``, and every
output (Y, Y_h, Y_c)."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import edgec
from edgec.errors import CompileError

HIDDEN, FEATURES = 5, 3


def _rnn_model(op, gates, *, direction="forward", layout=0, peepholes=False, initial=True, **attrs):
    rng = np.random.default_rng(7)
    dirs = 2 if direction == "bidirectional" else 1
    inits = {
        "W": rng.standard_normal((dirs, gates * HIDDEN, FEATURES)).astype(np.float32) * 0.5,
        "R": rng.standard_normal((dirs, gates * HIDDEN, HIDDEN)).astype(np.float32) * 0.5,
        "B": rng.standard_normal((dirs, 2 * gates * HIDDEN)).astype(np.float32) * 0.5,
    }
    names = ["X", "W", "R", "B", ""]
    if initial:
        names.append("h0")
        if op == "LSTM":
            names.append("c0")
    if peepholes:
        names += [""] * (7 - len(names)) + ["P"]
        inits["P"] = rng.standard_normal((dirs, 3 * HIDDEN)).astype(np.float32) * 0.5
    outputs = ["Y", "Y_h", "Y_c"] if op == "LSTM" else ["Y", "Y_h"]
    node = helper.make_node(op, names, outputs, hidden_size=HIDDEN, direction=direction, layout=layout, **attrs)
    x_shape = ["seq", "batch", FEATURES] if layout == 0 else ["batch", "seq", FEATURES]
    state_shape = [dirs, "batch", HIDDEN] if layout == 0 else ["batch", dirs, HIDDEN]
    y_shape = ["seq", dirs, "batch", HIDDEN] if layout == 0 else ["batch", "seq", dirs, HIDDEN]
    graph_inputs = [helper.make_tensor_value_info("X", TensorProto.FLOAT, x_shape)]
    graph_inputs += [helper.make_tensor_value_info(n, TensorProto.FLOAT, state_shape) for n in ("h0", "c0")
                     if n in names]
    graph = helper.make_graph(
        [node], op.lower(), graph_inputs,
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, y_shape if o == "Y" else state_shape)
         for o in outputs],
        [numpy_helper.from_array(v, k) for k, v in inits.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    model.ir_version = 10
    return model


def _feeds(model, seq, batch, seed=0):
    rng = np.random.default_rng(seed)
    feeds = {}
    for vi in model.graph.input:
        if vi.name in {i.name for i in model.graph.initializer}:
            continue
        dims = [{"seq": seq, "batch": batch}.get(d.dim_param, d.dim_value) for d in vi.type.tensor_type.shape.dim]
        feeds[vi.name] = rng.standard_normal(dims).astype(np.float32)
    return feeds


def _reference(model, path):
    """onnxruntime, or ONNX's reference evaluator for layout=1, which onnxruntime refuses (the
    evaluator ignores ``clip``, so clip cases stay in layout 0)."""
    names = [o.name for o in model.graph.output]
    layout = next((a.i for a in model.graph.node[0].attribute if a.name == "layout"), 0)
    if layout:
        from onnx.reference import ReferenceEvaluator

        evaluator = ReferenceEvaluator(model)
        return lambda feeds: dict(zip(names, evaluator.run(None, feeds)))
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    return lambda feeds: dict(zip(names, session.run(None, feeds)))


def _check(model, tmp_path):
    path = str(tmp_path / "rnn.onnx")
    onnx.save(model, path)
    artifact = edgec.compile(path, "host")
    reference = _reference(model, path)
    for seq, batch in ((6, 2), (3, 1)):  # one artifact, two sequence lengths and batches
        feeds = _feeds(model, seq, batch)
        got = artifact.run(feeds)
        for name, want in reference(feeds).items():
            assert got[name].shape == want.shape, name
            np.testing.assert_allclose(got[name], want, rtol=1e-4, atol=1e-5, err_msg=name)


@pytest.mark.parametrize("case", [
    dict(direction="forward"),
    dict(direction="reverse", peepholes=True),
    dict(direction="bidirectional", clip=0.8),
    dict(direction="bidirectional", layout=1),
    dict(direction="bidirectional", initial=False),
], ids=["forward", "reverse-peepholes", "bidir-clip", "bidir-layout1", "bidir-zero-state"])
def test_lstm(case, tmp_path):
    _check(_rnn_model("LSTM", 4, **case), tmp_path)


@pytest.mark.parametrize("case", [
    dict(direction="forward", linear_before_reset=1),
    dict(direction="forward", linear_before_reset=0),
    dict(direction="reverse", linear_before_reset=0, clip=0.7),
    dict(direction="bidirectional", layout=1, linear_before_reset=1, initial=False),
], ids=["lbr1", "lbr0", "reverse-lbr0-clip", "bidir-layout1"])
def test_gru(case, tmp_path):
    _check(_rnn_model("GRU", 3, **case), tmp_path)


def test_unsupported_activation_is_a_one_line_compile_error(tmp_path):
    model = _rnn_model("GRU", 3, activations=["Relu", "Tanh"])
    path = str(tmp_path / "gru.onnx")
    onnx.save(model, path)
    with pytest.raises(CompileError, match="activations") as err:
        edgec.compile(path, "host")
    assert "\n" not in str(err.value)


def test_gpu_target_gets_a_device_launched_kernel(tmp_path):
    """Converted under a GPU target, the recurrence runs inside a device launch; else on the host."""
    import tvm

    from edgec.frontend.onnx import import_onnx
    from edgec.targets import resolve

    path = str(tmp_path / "lstm.onnx")
    onnx.save(_rnn_model("LSTM", 4), path)
    with tvm.target.Target(resolve("cuda").target):
        on_gpu = import_onnx(path).mod
    on_cpu = import_onnx(path).mod
    kernels = lambda mod: [f for gv, f in mod.functions.items() if "lstm" in gv.name_hint]  # noqa: E731
    assert kernels(on_gpu) and all("threadIdx.x" in f.script() for f in kernels(on_gpu))
    assert kernels(on_cpu) and not any("threadIdx" in f.script() for f in kernels(on_cpu))
