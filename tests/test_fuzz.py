"""The ONNX fuzzer (tests/fuzz/harness.py), for a bounded time, and the findings it made, replayed.

``EDGEC_FUZZ_SECONDS`` (default 60) sets the budget and ``EDGEC_FUZZ_SEED`` the seed; run the
harness directly for longer sessions (docs/RELIABILITY.md).
"""

from __future__ import annotations

import glob
import json
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "fuzz"))
import harness  # noqa: E402

REGRESSIONS = sorted(glob.glob(os.path.join(os.path.dirname(__file__), "fuzz", "regressions", "*.json")))


def test_a_bounded_fuzzing_run_finds_nothing():
    seconds = float(os.environ.get("EDGEC_FUZZ_SECONDS", "60"))
    # a fixed seed and a case cap keep the default run the same on fast and slow machines;
    # a longer EDGEC_FUZZ_SECONDS lifts the cap
    cap = None if "EDGEC_FUZZ_SECONDS" in os.environ else 400
    report = harness.fuzz(seconds, int(os.environ.get("EDGEC_FUZZ_SEED", "20261121")), findings_dir=None,
                          max_cases=cap)
    assert report["executions"] >= 10, report
    # the run reached the compiler and the comparison, not only the parser
    assert report["outcomes"].get("edgec ok", 0) > 0 and report["outcomes"].get("ort ok", 0) > 0, report
    # no crash, hang or non-EdgecError exception, whatever the input
    assert not [f for f in report["findings"] if f["kind"] != "mismatch"], json.dumps(report["findings"], indent=1)
    # outputs match onnxruntime, except the documented special-value deviation (docs/RELIABILITY.md:
    # NaN through max/min-based operators follows IEEE maxNum, which returns the other operand)
    unexplained = [f for f in report["findings"] if "non-finite" not in f["detail"]]
    assert not unexplained, json.dumps(unexplained, indent=1)


@pytest.fixture(scope="module")
def worker_box():
    box: list = []
    yield box
    for worker in box:
        worker.close()


@pytest.mark.parametrize("path", REGRESSIONS, ids=[os.path.basename(p)[:-5] for p in REGRESSIONS])
def test_fixed_findings_stay_fixed(path, worker_box, tmp_path):
    with open(path) as f:
        case = json.load(f)
    result = harness.run_case(worker_box, case["seed"], case["records"], str(tmp_path))
    assert "finding" not in result, result
