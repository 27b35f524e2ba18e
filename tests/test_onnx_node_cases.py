"""ONNX's own node test cases through edgec: the first case of every op type.

Each case compiles with ``edgec.onnx_backend`` in a child process (a crash or hang fails that case
only) and is compared with ONNX's reference outputs at rtol 1e-3 / atol 1e-4. Cases listed in
``onnx_expected_failures.txt`` are strict xfails, so a case that starts passing is noticed. The
full run over every case is ``python -m edgec.onnx_conformance``.
"""

from __future__ import annotations

import os

import pytest

from edgec.onnx_conformance import CaseRunner, first_case_per_op

EXPECTED_FAILURES = os.path.join(os.path.dirname(__file__), "onnx_expected_failures.txt")


def expected_failures() -> dict[str, str]:
    """``{case name: reason}`` from the data file: one ``name  reason`` per line, ``#`` comments."""
    known = {}
    with open(EXPECTED_FAILURES, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith("#"):
                name, _, reason = line.partition(" ")
                known[name] = reason.strip() or "known failure"
    return known


def _params():
    known = expected_failures()
    return [
        pytest.param(name, marks=pytest.mark.xfail(strict=True, reason=known[name])) if name in known else name
        for name in first_case_per_op()
    ]


@pytest.fixture(scope="module")
def runner():
    r = CaseRunner(timeout=120)
    yield r
    r.close()


@pytest.mark.parametrize("case", _params())
def test_node_case(runner, case):
    result = runner.run(case, "edgec")
    assert result.passed, result.reason


def test_expected_failures_name_real_cases():
    from edgec.onnx_conformance import node_cases

    unknown = sorted(set(expected_failures()) - set(node_cases()))
    assert not unknown, f"onnx_expected_failures.txt names cases ONNX does not have: {unknown}"


def test_onnx_backend_test_drives_edgec():
    """ONNX's own ``BackendTest`` harness runs cases through ``edgec.onnx_backend``."""
    import unittest

    import onnx.backend.test

    from edgec.onnx_backend import EdgecBackend

    harness = onnx.backend.test.BackendTest(EdgecBackend, "edgec_backend_test")
    # a plain op, one that binds a shape tensor (Reshape's shape), one of our converters
    harness.include(r"^test_(relu|reshape_reordered_all_dims|layer_normalization_2d_axis0)_cpu$")
    suite = unittest.TestSuite()
    for case in harness.test_cases.values():
        suite.addTests(unittest.defaultTestLoader.loadTestsFromTestCase(case))
    with open(os.devnull, "w") as sink:
        result = unittest.TextTestRunner(stream=sink).run(suite)
    assert result.testsRun - len(result.skipped) == 3
    assert result.wasSuccessful(), result.failures + result.errors


def _reshape_model():
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Reshape", ["x", "shape"], ["y"])], "reshape",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 4]),
         helper.make_tensor_value_info("shape", TensorProto.INT64, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 6])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10
    return model


def test_compile_constants_bind_a_shape_input():
    import numpy as np

    import edgec

    art = edgec.compile(_reshape_model(), "host", constants={"shape": np.array([4, 6])})
    assert [s.name for s in art.inputs] == ["x"]
    assert art.manifest["bound_constants"] == ["shape"]
    x = np.random.default_rng(0).standard_normal((2, 3, 4)).astype(np.float32)
    np.testing.assert_array_equal(art.run({"x": x})["y"], x.reshape(4, 6))


def test_compile_constants_reject_unknown_inputs():
    import numpy as np

    import edgec
    from edgec.errors import InputError

    with pytest.raises(InputError, match="not inputs of the model"):
        edgec.compile(_reshape_model(), "host", constants={"nope": np.array([4, 6])})
