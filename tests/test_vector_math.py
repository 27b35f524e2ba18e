"""Vectorizable exp/erf/sigmoid/softmax/gelu (passes/vector_math.py) against float64 references.

The references are numpy (and ``math.erf``) in float64, rounded to float32; the special values
(NaN, ±inf, overflow, subnormal results) are compared exactly as onnxruntime produces them.
"""

from __future__ import annotations

import math

import numpy as np
import onnxruntime as ort
import pytest
import tvm
from onnx import TensorProto, helper
from tvm import te

import edgec
from edgec.passes import vector_math

from conftest import save_model

SPECIALS = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 88.7, 88.73, 89.0, -87.3, -88.0, -100.0, -103.9, -104.0,
                     -1e30, 1e30, 1e-30, -1e-30, 0.5, -0.5, 0.4999999, 3.9, 4.0, 10.0, -10.0], dtype=np.float32)


pytestmark = pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")


def _inputs(low: float, high: float) -> np.ndarray:
    rng = np.random.default_rng(0)
    return np.concatenate([SPECIALS, rng.uniform(low, high, 20000).astype(np.float32),
                           np.linspace(low, high, 4001, dtype=np.float32)])


def _run(fn, x: np.ndarray) -> np.ndarray:
    """``fn`` applied elementwise by a TIR kernel that LLVM vectorizes (16 lanes)."""
    a = te.placeholder((x.size,), "float32", name="a")
    b = te.compute(a.shape, lambda i: fn(a[i]), name="b")
    sch = tvm.s_tir.Schedule(te.create_prim_func([a, b]))
    (loop,) = sch.get_loops(sch.get_sblock("b"))
    _, inner = sch.split(loop, factors=[None, 16])
    sch.vectorize(inner)
    lib = tvm.compile(sch.mod, target=tvm.target.Target({"kind": "llvm"}))
    out = tvm.runtime.tensor(np.zeros_like(x))
    lib(tvm.runtime.tensor(x), out)
    return out.numpy()


def _ulp_error(got: np.ndarray, want64: np.ndarray) -> np.ndarray:
    """Error in units of the last place of the float32 reference."""
    want = want64.astype(np.float32)
    finite = np.isfinite(want)
    ulp = np.spacing(np.abs(want[finite]).astype(np.float32))
    return np.abs(got[finite].astype(np.float64) - want64[finite]) / ulp


def _same_specials(got: np.ndarray, want: np.ndarray):
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    inf = np.isinf(want)
    np.testing.assert_array_equal(got[inf], want[inf])


def test_exp_is_within_2_ulp_and_keeps_special_values():
    x = _inputs(-104.0, 89.0)
    got = _run(vector_math.exp, x)
    with np.errstate(over="ignore"):
        want = np.exp(x.astype(np.float64))
    _same_specials(got, want.astype(np.float32))
    normal = np.abs(want.astype(np.float32)) >= np.finfo(np.float32).tiny
    assert _ulp_error(got[normal], want[normal]).max() <= 2
    tiny = ~normal & np.isfinite(want)  # subnormal results: absolute error within a few subnormal steps
    assert np.abs(got[tiny] - want[tiny]).max() <= 4 * np.finfo(np.float32).smallest_subnormal


def test_erf_matches_math_erf():
    x = _inputs(-6.0, 6.0)
    got = _run(vector_math.erf, x)
    want = np.array([math.erf(v) if np.isfinite(v) else (np.nan if np.isnan(v) else np.sign(v)) for v in x.astype(np.float64)])
    _same_specials(got, want.astype(np.float32))
    finite = np.isfinite(want)
    np.testing.assert_allclose(got[finite], want[finite], rtol=2e-6, atol=3e-7)
    small = finite & (np.abs(x) < 0.5) & (x != 0)
    assert (np.abs(got[small] - want[small]) / np.abs(want[small])).max() < 1e-6  # relative, near 0


@pytest.mark.parametrize("op", ["Exp", "Erf", "Sigmoid", "Softmax", "Gelu"])
def test_model_ops_match_onnxruntime(tmp_path, op):
    """The legalizations as a compiled model runs them, against onnxruntime, specials included."""
    rng = np.random.default_rng(1)
    x = rng.uniform(-30, 30, (8, 64)).astype(np.float32)
    x[0, :len(SPECIALS)] = SPECIALS[:64]
    if op == "Softmax":
        x[1] = -np.inf  # a fully masked row: NaN in onnxruntime
        x[2, :8] = -np.inf  # a partly masked row
    opset = 20 if op == "Gelu" else 17
    node = helper.make_node(op, ["x"], ["y"], **({"axis": -1} if op == "Softmax" else {}))
    graph = helper.make_graph([node], op.lower(), [helper.make_tensor_value_info("x", TensorProto.FLOAT, [8, 64])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [8, 64])])
    path = save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]), tmp_path / "m.onnx")
    want = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    got = list(edgec.compile(path, "host").run({"x": x}).values())[0]
    _same_specials(got, want)
    finite = np.isfinite(want)
    np.testing.assert_allclose(got[finite], want[finite], rtol=1e-5, atol=1e-6)
