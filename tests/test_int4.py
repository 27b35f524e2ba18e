"""int4 weight matmul: the operator against numpy, imported int4 ONNX models against
onnxruntime / ONNX's reference evaluator, --quantize int4 (RTN and AWQ), and bad input."""

from __future__ import annotations

import logging

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import tvm
from onnx import TensorProto, helper, numpy_helper
from tvm import relax

import edgec
from edgec.errors import EdgecError
from edgec.passes.int4 import GROUP_SIZES, QuantizedWeight, emit_int4_matmul, quantize


def _run_operator(x, qw, bias, target="llvm"):
    bb = relax.BlockBuilder()
    xv = relax.Var("x", relax.TensorType(list(x.shape), "float32"))
    with bb.function("main", [xv]):
        with bb.dataflow():
            y = bb.emit_output(emit_int4_matmul(bb, xv, qw, bias, tvm.target.Target(target)))
        bb.emit_func_output(y)
    vm = relax.VirtualMachine(tvm.compile(bb.get(), target), tvm.cpu())
    return vm["main"](tvm.runtime.tensor(x)).numpy()


def _reference(x, q, scale, zero, group, bias):
    """Dequantize-then-matmul, written independently of the packing code."""
    w = (q.astype(np.float64) - np.repeat(zero, group, axis=1)) * np.repeat(scale, group, axis=1)
    y = x.astype(np.float64) @ w.T
    return y + bias if bias is not None else y


@pytest.mark.parametrize("group", GROUP_SIZES)
@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("m", [1, 5])
def test_operator_matches_numpy(group, symmetric, m):
    rng = np.random.default_rng(group + m)
    n, k = 40, 256  # N not a multiple of the vector block: the tail is guarded
    qw = quantize(rng.standard_normal((n, k)).astype("float32"), group, symmetric)
    if symmetric:
        assert np.all(qw.zero == 8)
    bias = rng.standard_normal(n).astype("float32") if m == 5 else None
    x = rng.standard_normal((1, m, k)).astype("float32")
    got = _run_operator(x, qw, bias)
    want = _reference(x, qw.q, qw.scale, qw.zero, group, bias)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_rtn_quantization_is_close_to_the_float_weight():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((64, 128)).astype("float32")
    for sym in (True, False):
        err = np.abs(quantize(w, 32, sym).dequantize() - w).max()
        assert err < 0.2 * np.abs(w).max()


def test_cpu_kernel_compiles_for_arm_neon():
    target = tvm.target.Target({"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mattr": ["+neon"]})
    qw = quantize(np.random.default_rng(0).standard_normal((40, 128)).astype("float32"), 64, True)
    for m in (1, 3):
        bb = relax.BlockBuilder()
        xv = relax.Var("x", relax.TensorType([m, 128], "float32"))
        with bb.function("main", [xv]):
            with bb.dataflow():
                y = bb.emit_output(emit_int4_matmul(bb, xv, qw, None, target))
            bb.emit_func_output(y)
        mod = bb.get()
        tvm.compile(mod, target)
        kernel = next(f for gv, f in mod.functions_items() if gv.name_hint.startswith("int4_"))
        asm = tvm.compile(tvm.IRModule({"k": kernel.with_attr("global_symbol", "k")}), target).mod.inspect_source("asm")
        assert "fmla" in asm and "v0.4s" in asm.replace("v1.4s", "v0.4s")  # NEON vector FMAs


def test_gpu_kernel_compiles_for_cuda():
    """W4A16: the DLight-scheduled dequant-GEMV/GEMM builds for CUDA (no GPU needed)."""
    from edgec.schedules.default import default_schedule_pass
    from edgec.targets import resolve

    target = tvm.target.Target(resolve("cuda", arch="sm_80").target)
    rng = np.random.default_rng(0)
    qw = quantize(rng.standard_normal((64, 128)).astype("float32"), 32, False)
    for m in (1, 16):
        bb = relax.BlockBuilder()
        xv = relax.Var("x", relax.TensorType([m, 128], "float16"))
        with bb.function("main", [xv]):
            with bb.dataflow():
                y = bb.emit_output(emit_int4_matmul(bb, xv, qw, None, target))
            bb.emit_func_output(y)
        mod = bb.get()
        with target:
            mod = default_schedule_pass(target)(mod)
        kernel = next(f for gv, f in mod.functions_items() if gv.name_hint.startswith("int4_matmul_gpu"))
        assert kernel.attrs["tirx.is_scheduled"]
        tvm.compile(mod, target)


def test_matmulnbits_model_compiles_for_cuda():
    model = _ort_nbits(_matmul_model(256, 64, rows=1), 32, False)
    art = edgec.compile(model, "cuda", arch="sm_80")
    assert art.manifest["device"] == "cuda"


# -- imported models --------------------------------------------------------------------------


def _matmul_model(k, n, rows=3, seed=0):
    rng = np.random.default_rng(seed)
    w = numpy_helper.from_array(rng.standard_normal((k, n)).astype("float32"), "W")
    b = numpy_helper.from_array(rng.standard_normal(n).astype("float32"), "B")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["h"]), helper.make_node("Add", ["h", "B"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, rows, k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, rows, n])], [w, b])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10
    return model


def _ort_nbits(model, block, symmetric):
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    logging.getLogger("onnxruntime").setLevel(logging.WARNING)
    quantizer = MatMulNBitsQuantizer(model, block_size=block, is_symmetric=symmetric)
    quantizer.process()
    out = quantizer.model.model
    out.ir_version = 10
    assert any(node.op_type == "MatMulNBits" for node in out.graph.node)
    return out


@pytest.mark.parametrize("block", GROUP_SIZES)
@pytest.mark.parametrize("symmetric", [True, False])
def test_matmulnbits_from_onnxruntime_quantizer_matches_onnxruntime(block, symmetric):
    model = _ort_nbits(_matmul_model(256, 48), block, symmetric)
    x = np.random.default_rng(1).standard_normal((1, 3, 256)).astype("float32")
    want = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0]
    got = edgec.compile(model, "host").run({"x": x})["y"]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=2e-4)


def _nbits_node_model(k=64, n=8, block=32, bits=4, scales_shape=None, **attrs):
    blocks = k // block if k % block == 0 else -(-k // block)
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.integers(0, 255, (n, blocks, block * bits // 8)).astype(np.uint8), "Bq"),
        numpy_helper.from_array(rng.random(scales_shape or (n * blocks,)).astype("float32"), "S"),
    ]
    node = helper.make_node("MatMulNBits", ["x", "Bq", "S"], ["y"], domain="com.microsoft",
                            K=k, N=n, bits=bits, block_size=block, **attrs)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, k])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, n])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])
    model.ir_version = 10
    return model


def test_matmulnbits_without_zero_points_matches_onnxruntime():
    model = _nbits_node_model(k=128, n=24, block=64)
    x = np.random.default_rng(2).standard_normal((1, 128)).astype("float32")
    want = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0]
    np.testing.assert_allclose(edgec.compile(model, "host").run({"x": x})["y"], want, rtol=1e-4, atol=2e-4)


def _blocked_dq_model(k, n, block, signed, with_zero, seed=0):
    rng = np.random.default_rng(seed)
    lo, hi = (-8, 7) if signed else (0, 15)
    dtype = TensorProto.INT4 if signed else TensorProto.UINT4
    inits = [helper.make_tensor("wq", dtype, [k, n], rng.integers(lo, hi + 1, (k, n)).flatten().tolist()),
             numpy_helper.from_array((rng.random((k // block, n)) * 0.1 + 0.01).astype("float32"), "ws")]
    if with_zero:
        inits.append(helper.make_tensor("wz", dtype, [k // block, n],
                                        rng.integers(lo, hi + 1, (k // block, n)).flatten().tolist()))
    nodes = [helper.make_node("DequantizeLinear", [i.name for i in inits], ["w"], axis=0, block_size=block),
             helper.make_node("MatMul", ["x", "w"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, k])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, n])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    model.ir_version = 10
    return model


@pytest.mark.parametrize("block", GROUP_SIZES)
@pytest.mark.parametrize("signed,with_zero", [(True, True), (False, True), (True, False), (False, False)])
def test_blocked_dequantizelinear_matmul_matches_reference(block, signed, with_zero):
    from onnx.reference import ReferenceEvaluator

    model = _blocked_dq_model(256, 40, block, signed, with_zero)
    x = np.random.default_rng(3).standard_normal((2, 256)).astype("float32")
    want = ReferenceEvaluator(model).run(None, {"x": x})[0]
    # onnxruntime's optimizer rewrites DQ+MatMul into an approximate kernel: compare unoptimized
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    np.testing.assert_allclose(ort.InferenceSession(model.SerializeToString(), opts).run(None, {"x": x})[0],
                               want, rtol=1e-4, atol=1e-4)
    compiled = edgec.compile(model, "host")
    np.testing.assert_allclose(compiled.run({"x": x})["y"], want, rtol=1e-4, atol=1e-4)


def test_blocked_dequantizelinear_matmul_is_fused():
    from edgec.frontend import import_model
    from edgec.passes.int4.fuse import FuseInt4Dequant

    mod = import_model(_blocked_dq_model(128, 16, 32, True, True), None).mod
    fused = FuseInt4Dequant(tvm.target.Target("llvm"))(mod)
    names = {gv.name_hint for gv in fused.get_global_vars()}
    assert "int4_dequant" not in names and any(n.startswith("int4_gemm") for n in names)


# -- bad input --------------------------------------------------------------------------------


def test_matmulnbits_with_a_partial_last_block_matches_onnxruntime():
    model = _ort_nbits(_matmul_model(272, 24), 32, False)  # K = 8.5 blocks: onnxruntime pads
    x = np.random.default_rng(4).standard_normal((1, 3, 272)).astype("float32")
    want = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0]
    np.testing.assert_allclose(edgec.compile(model, "host").run({"x": x})["y"], want, rtol=1e-4, atol=2e-4)


def test_k_not_divisible_by_group_is_an_error():
    qw = QuantizedWeight(np.zeros((4, 48), np.uint8), np.ones((4, 1), np.float32), np.zeros((4, 1), np.float32), 32)
    with pytest.raises(EdgecError, match="not divisible"):
        _run_operator(np.zeros((1, 48), np.float32), qw, None)


def test_bad_block_size_is_an_error():
    with pytest.raises(EdgecError, match="block_size=24"):
        edgec.compile(_nbits_node_model(k=48, n=8, block=24), "host")


def test_unsupported_bits_is_an_error():
    with pytest.raises(EdgecError, match="bits=8"):
        edgec.compile(_nbits_node_model(k=64, n=8, block=32, bits=8), "host")


def test_inconsistent_scales_is_an_error():
    with pytest.raises(EdgecError, match="scales has shape"):
        edgec.compile(_nbits_node_model(k=64, n=8, block=32, scales_shape=(8 * 3,)), "host")
    model = _blocked_dq_model(128, 16, 32, True, False)
    scale = next(t for t in model.graph.initializer if t.name == "ws")
    scale.CopyFrom(numpy_helper.from_array(np.ones((2, 16), np.float32), "ws"))
    with pytest.raises(EdgecError, match="scale shape"):
        edgec.compile(model, "host")


# -- --quantize int4 ---------------------------------------------------------------------------


class _OutlierMLP:
    """A transformer-style block whose normalized input has a few very large channels (the
    activation outliers AWQ protects), exported to ONNX."""

    def __init__(self, tmp_path, hidden=256, ffn=512):
        import torch

        torch.manual_seed(0)

        class Block(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.norm = torch.nn.LayerNorm(hidden)
                self.up = torch.nn.Linear(hidden, ffn)
                self.gate = torch.nn.Linear(hidden, ffn)
                self.down = torch.nn.Linear(ffn, hidden)
                with torch.no_grad():  # outlier channels, as in real LLM activations
                    self.norm.weight[:4] = 25.0

            def forward(self, x):
                h = self.norm(x)
                return self.down(torch.nn.functional.silu(self.gate(h)) * self.up(h))

        self.module = Block().eval()
        self.path = str(tmp_path / "outlier_mlp.onnx")
        torch.onnx.export(self.module, torch.zeros(8, hidden), self.path, input_names=["x"], output_names=["y"],
                          dynamo=False, opset_version=17)
        model = onnx.load(self.path)
        model.ir_version = 10
        onnx.save(model, self.path)
        rng = np.random.default_rng(0)
        self.calibration = rng.standard_normal((4, 8, hidden)).astype("float32")
        self.test_x = rng.standard_normal((8, hidden)).astype("float32")

    def reference(self, x):
        import torch

        with torch.no_grad():
            return self.module(torch.from_numpy(x)).numpy()


def test_quantize_int4_rtn_runs_and_reports(tmp_path):
    model = _OutlierMLP(tmp_path)
    art = edgec.compile(model.path, "host", quantize="int4")
    notes = " ".join(art.report.notes)
    assert "weight bytes" in notes and "output error" in notes
    kernels = [n for n in art.manifest["weights"] if n["dtype"] == "uint8"]
    assert len(kernels) == 3  # the three linears' packed weights
    ref = model.reference(model.test_x)
    err = np.linalg.norm(art.run({"x": model.test_x})["y"] - ref) / np.linalg.norm(ref)
    assert err < 0.2


def test_awq_beats_round_to_nearest(tmp_path):
    model = _OutlierMLP(tmp_path)
    calib = tmp_path / "calib.npz"
    np.savez(calib, x=model.calibration)
    ref = model.reference(model.test_x)
    rtn = edgec.compile(model.path, "host", quantize="int4").run({"x": model.test_x})["y"]
    awq = edgec.compile(model.path, "host", quantize="int4", calibration=str(calib)).run({"x": model.test_x})["y"]
    err_rtn = np.linalg.norm(rtn - ref) / np.linalg.norm(ref)
    err_awq = np.linalg.norm(awq - ref) / np.linalg.norm(ref)
    assert err_awq < 0.8 * err_rtn, (err_awq, err_rtn)


def test_cli_quantize_int4_json_report(tmp_path):
    import json

    from click.testing import CliRunner

    from edgec.cli import cli

    model = _OutlierMLP(tmp_path)
    out = tmp_path / "q.edgec"
    result = CliRunner().invoke(cli, ["compile", model.path, "--quantize", "int4", "-o", str(out), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output[result.output.index("{"):])
    text = json.dumps(report)
    assert "weight bytes" in text and "output error" in text


def test_calibration_with_wrong_inputs_is_an_error(tmp_path):
    model = _OutlierMLP(tmp_path)
    calib = tmp_path / "bad.npz"
    np.savez(calib, not_x=model.calibration)
    with pytest.raises(EdgecError, match="lacks inputs"):
        edgec.compile(model.path, "host", quantize="int4", calibration=str(calib))


# -- GPU and the example ----------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.parametrize("rows", [1, 16])
def test_w4a16_on_gpu_matches_onnxruntime(rows):
    model = _ort_nbits(_matmul_model(512, 256, rows=rows), 32, False)
    x = np.random.default_rng(5).standard_normal((1, rows, 512)).astype("float32")
    want = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0]
    got = edgec.compile(model, "cuda").run({"x": x})["y"]
    np.testing.assert_allclose(got, want, rtol=2e-2, atol=5e-2)  # fp16 activations


@pytest.mark.slow
def test_llama_int4_example_runs():
    import os
    import subprocess
    import sys

    script = os.path.join(os.path.dirname(__file__), "..", "examples", "llama_int4.py")
    proc = subprocess.run([sys.executable, script, "--layers", "1", "--hidden", "256", "--runs", "2",
                           "--embeddings", "--verify"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "int4 vs PyTorch" in proc.stdout and "weight bytes" in proc.stdout
    assert "1 embedding table(s)" in proc.stdout and "verify (host, against the dequantized model): ok" in proc.stdout


# -- options, embeddings, --verify of quantized builds -----------------------------------------


def _take_reference(table_q: QuantizedWeight, idx):
    """Dequantize the whole table in numpy (independently of the packing code), then index."""
    g = table_q.group
    table = (table_q.q.astype(np.float64) - np.repeat(table_q.zero, g, axis=1)) * np.repeat(table_q.scale, g, axis=1)
    return table[np.clip(idx, 0, len(table) - 1)]


@pytest.mark.parametrize("group", GROUP_SIZES)
@pytest.mark.parametrize("symmetric", [True, False])
def test_int4_take_matches_numpy(group, symmetric):
    from edgec.passes.int4.embedding import emit_int4_take

    rng = np.random.default_rng(group)
    qw = quantize(rng.standard_normal((37, 256)).astype("float32"), group, symmetric)
    idx = np.array([[0, 36, 5], [17, 17, 2]], "int32")
    bb = relax.BlockBuilder()
    iv = relax.Var("i", relax.TensorType(list(idx.shape), "int32"))
    with bb.function("main", [iv]):
        with bb.dataflow():
            y = bb.emit_output(emit_int4_take(bb, iv, qw))
        bb.emit_func_output(y)
    mod = relax.transform.LegalizeOps()(bb.get())
    got = relax.VirtualMachine(tvm.compile(mod, "llvm"), tvm.cpu())["main"](tvm.runtime.tensor(idx)).numpy()
    np.testing.assert_allclose(got, _take_reference(qw, idx), rtol=1e-6, atol=1e-6)


def _token_model(v=512, d=128, seq=6, seed=0):
    """A tiny LM: embedding Gather -> MatMul -> Relu -> LM head MatMul (wider than its input)."""
    rng = np.random.default_rng(seed)
    inits = [numpy_helper.from_array(rng.standard_normal((v, d)).astype("float32"), "E"),
             numpy_helper.from_array((rng.standard_normal((d, d)) / 8).astype("float32"), "W1"),
             numpy_helper.from_array((rng.standard_normal((d, v)) / 8).astype("float32"), "Wlm")]
    nodes = [helper.make_node("Gather", ["E", "tok"], ["h"], axis=0), helper.make_node("MatMul", ["h", "W1"], ["a"]),
             helper.make_node("Relu", ["a"], ["r"]), helper.make_node("MatMul", ["r", "Wlm"], ["logits"])]
    graph = helper.make_graph(nodes, "lm", [helper.make_tensor_value_info("tok", TensorProto.INT64, [1, seq])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, seq, v])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10
    return model


def _dequantized(w, group, symmetric):
    qw = quantize(w, group, symmetric)
    return _take_reference(qw, np.arange(len(w)))


@pytest.mark.parametrize("group,symmetric", [(32, True), (128, False)])
def test_int4_embedding_model_matches_numpy(group, symmetric):
    model = _token_model()
    arrays = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    art = edgec.compile(model, "host", quantize="int4", int4_group=group, int4_symmetric=symmetric,
                        int4_embeddings=True)
    notes = " ".join(art.report.notes)
    assert "1 embedding table(s)" in notes
    before = sum(a.nbytes for a in arrays.values())
    assert f"weight bytes {before} ->" in notes  # the table counts
    tok = np.array([[0, 511, 7, 7, 300, -2]], "int64")  # -2: ONNX wraps a negative index once
    table = _dequantized(arrays["E"], group, symmetric)
    w1 = _dequantized(arrays["W1"].T, group, symmetric).T
    wlm = _dequantized(arrays["Wlm"].T, group, symmetric).T
    want = np.maximum(table[tok % 512] @ w1, 0) @ wlm
    np.testing.assert_allclose(art.run({"tok": tok})["logits"], want, rtol=1e-4, atol=1e-4)
    assert art.manifest["options"]["int4"] == {"group": group, "symmetric": symmetric, "embeddings": True,
                                               "lm_head": True}


def test_int4_embedding_clamps_out_of_range_indices():
    """onnxruntime refuses an out-of-range Gather index; edgec's float take reads out of bounds
    (undefined); the int4 gather clamps to the nearest row, so it never crashes."""
    art = edgec.compile(_token_model(), "host", quantize="int4", int4_embeddings=True)
    got = art.run({"tok": np.array([[600, 512, 511, 0, -600, 3]], "int64")})["logits"][0]
    np.testing.assert_array_equal(got[0], got[2])
    np.testing.assert_array_equal(got[1], got[2])
    np.testing.assert_array_equal(got[4], got[3])


def test_int4_skip_lm_head_keeps_the_head_float():
    full = edgec.compile(_token_model(), "host", quantize="int4")
    skip = edgec.compile(_token_model(), "host", quantize="int4", int4_lm_head=False)
    packed = [[w for w in a.manifest["weights"] if w["dtype"] == "uint8"] for a in (full, skip)]
    assert len(packed[0]) == 2 and len(packed[1]) == 1
    assert any(w["shape"] == [128, 512] for w in skip.manifest["weights"])  # the float head
    assert "LM head kept float" in " ".join(skip.report.notes)


def test_int4_embedding_compiles_for_cuda():
    art = edgec.compile(_token_model(), "cuda", arch="sm_80", quantize="int4", int4_embeddings=True)
    assert sum(w["dtype"] == "uint8" for w in art.manifest["weights"]) == 3


def test_int4_options_need_quantize():
    with pytest.raises(EdgecError, match="apply only with quantize='int4'"):
        edgec.compile(_token_model(), "host", int4_embeddings=True)
    with pytest.raises(EdgecError, match="group size must be one of"):
        edgec.compile(_token_model(), "host", quantize="int4", int4_group=16)
    from click.testing import CliRunner

    from edgec.cli import cli

    result = CliRunner().invoke(cli, ["compile", "m.onnx", "--int4-group", "32", "--int4-skip-lm-head"])
    assert result.exit_code == 2 and "--int4-group, --int4-skip-lm-head apply with --quantize int4" in result.output


def test_cli_int4_options_and_verify(tmp_path):
    """The flags reach the isolated compile; --verify compares with the dequantized model and passes."""
    import json

    from click.testing import CliRunner

    from edgec.cli import cli

    path = tmp_path / "lm.onnx"
    onnx.save(_token_model(), str(path))
    out = tmp_path / "lm.edgec"
    result = CliRunner().invoke(cli, ["compile", str(path), "--quantize", "int4", "--int4-group", "64",
                                      "--int4-symmetric", "--int4-embeddings", "--verify", "-o", str(out), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output[result.output.index("{"):])
    assert report["verification"]["ok"] and "dequantized" in report["verification"]["how"]
    assert report["verification"]["float_error"][0]["relative_l2"] > 1e-3  # int4 is not the float model
    assert edgec.load(str(out)).manifest["options"]["int4"] == {"group": 64, "symmetric": True, "embeddings": True,
                                                                "lm_head": True}
    shown = CliRunner().invoke(cli, ["inspect", str(out)])
    assert "quantize   int4 (group 64, symmetric, embeddings int4, LM head int4)" in shown.output


def _corrupt_packed(art):
    """The artifact with its first packed int4 weight's bytes zeroed."""
    from edgec.artifact import WEIGHTS, Artifact

    params = {k: v.numpy() for k, v in tvm.runtime.load_param_dict(art.files[WEIGHTS]).items()}
    name = next(w["name"] for w in art.manifest["weights"] if w["dtype"] == "uint8")
    params[name] = np.zeros_like(params[name])
    files = dict(art.files)
    files[WEIGHTS] = bytes(tvm.runtime.save_param_dict({k: tvm.runtime.tensor(v) for k, v in params.items()}))
    bad = Artifact(art.manifest, files)
    bad.report = art.report
    return bad


def test_verify_of_a_quantized_build_fails_on_wrong_weights():
    from edgec.errors import VerificationError
    from edgec.verify import verify_artifact

    model = _token_model()
    feeds = {"tok": np.array([[1, 500, 9, 42, 0, 77]], "int64")}
    art = edgec.compile(model, "host", quantize="int4", int4_group=32, int4_embeddings=True)
    assert verify_artifact(art, model, feeds).ok
    with pytest.raises(VerificationError, match="differs from the reference"):
        verify_artifact(_corrupt_packed(art), model, feeds)
    # a reference quantized with other parameters (group 128) must not match the group-32 build
    other = edgec.compile(model, "host", quantize="int4", int4_group=128, int4_embeddings=True)
    art.report.int4_substitutions = other.report.int4_substitutions
    with pytest.raises(VerificationError, match="differs from the reference"):
        verify_artifact(art, model, feeds)


def test_verify_of_an_awq_build_passes(tmp_path):
    """AWQ scales the weights and folds 1/s into the LayerNorm: the reference's weight is dequant/s."""
    model = _OutlierMLP(tmp_path)
    calib = tmp_path / "calib.npz"
    np.savez(calib, x=model.calibration)
    art = edgec.compile(model.path, "host", quantize="int4", calibration=str(calib), verify=True)
    assert art.verification.ok and art.verification.float_error
    assert "folded" in " ".join(art.report.notes)


def test_verify_of_a_quantized_torch_module(tmp_path):
    """PyTorch models: the reference is PyTorch eager with the dequantized parameters swapped in."""
    import torch

    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Embedding(256, 128), torch.nn.Linear(128, 128), torch.nn.ReLU(),
                                 torch.nn.Linear(128, 256)).eval()
    art = edgec.compile(module, "host", inputs={"input": ((1, 5), "int64")}, quantize="int4", int4_embeddings=True,
                        verify=True)
    assert art.verification.ok and sum(w["dtype"] == "uint8" for w in art.manifest["weights"]) == 3
    path = str(tmp_path / "m.pt2")
    torch.export.save(torch.export.export(module, (torch.zeros(1, 5, dtype=torch.int64),)), path)
    art = edgec.compile(path, "host", quantize="int4", int4_embeddings=True, int4_lm_head=False, verify=True)
    assert art.verification.ok and sum(w["dtype"] == "uint8" for w in art.manifest["weights"]) == 2


def test_loaded_quantized_artifact_is_not_verified_blindly(tmp_path):
    from edgec.verify import verify_artifact

    art = edgec.compile(_token_model(), "host", quantize="int4")
    art.save(str(tmp_path / "q.edgec"))
    result = verify_artifact(edgec.load(str(tmp_path / "q.edgec")), _token_model())
    assert not result.executed and "verified when it is compiled" in result.note


def test_build_config_int4_keys(tmp_path):
    """edgec build: the int4_* keys reach the compile, and a fresh int4 cell verifies against the
    dequantized model; misuse is a config error naming the line."""
    import json

    from edgec.build import build
    from edgec.build_config import ConfigError, load_config

    onnx.save(_token_model(), str(tmp_path / "lm.onnx"))
    config = tmp_path / "edgec.toml"
    config.write_text('verify = true\n[models.lm]\npath = "lm.onnx"\ntargets = ["host"]\nquantize = "int4"\n'
                      'int4_group = 32\nint4_embeddings = true\n')
    summary = build(load_config(str(config)), str(tmp_path / "out"), str(tmp_path / "cache"), jobs=1)
    cell = json.loads((tmp_path / "out" / "build.json").read_text())["cells"][0]
    assert summary.failure() is None and cell["verification"]["ok"], cell
    assert cell["options"]["int4_group"] == 32
    art = edgec.load(str(tmp_path / "out" / "lm" / "host" / "model.edgec"))
    assert art.manifest["options"]["int4"]["group"] == 32 and art.manifest["options"]["int4"]["embeddings"]
    config.write_text('[models.lm]\npath = "lm.onnx"\ntargets = ["host"]\nint4_symmetric = true\n')
    with pytest.raises(ConfigError, match=r"edgec.toml:4: 'models.lm.int4_symmetric' applies with quantize"):
        load_config(str(config))
    config.write_text('[models.lm]\npath = "lm.onnx"\ntargets = ["host"]\nquantize = "int4"\nint4_group = 16\n')
    with pytest.raises(ConfigError, match="int4_group' must be 32, 64 or 128, not 16"):
        load_config(str(config))


def test_int4_embedding_model_on_vulkan_verifies():
    """The int4 gather and W4A16 matmul through the default GPU schedules, run on the Vulkan
    device (lavapipe in CI), checked against the dequantized model at fp16 tolerance."""
    from edgec.errors import VerificationError
    from edgec.verify import verify_artifact

    feeds = {"tok": np.array([[1, 500, 9, 42, 0, 77]], "int64")}
    art = edgec.compile(_token_model(), "vulkan", quantize="int4", int4_embeddings=True)
    result = verify_artifact(art, _token_model(), feeds)
    assert result.ok and result.how == "vulkan, against the dequantized model"
    with pytest.raises(VerificationError, match="fp16 activations"):
        verify_artifact(_corrupt_packed(art), _token_model(), feeds)


def test_int4_embedding_model_on_arm_verifies_under_qemu():
    """aarch64: the int4 gather (default CPU schedule) and NEON matmul, run under qemu-aarch64
    against the dequantized model at float tolerance."""
    from edgec.verify import verify_artifact

    art = edgec.compile(_token_model(), "linux-arm64", quantize="int4", int4_embeddings=True, int4_group=64)
    result = verify_artifact(art, _token_model(), {"tok": np.array([[1, 500, 9, 42, 0, 77]], "int64")})
    assert result.ok and result.how == "qemu-aarch64, against the dequantized model"
