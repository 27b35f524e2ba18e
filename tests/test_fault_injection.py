"""Fault injection around tuning databases (docs/RELIABILITY.md): real ``edgec tune`` processes,
SIGKILLed at random moments, and tuners and a compiler sharing one database.

Slow (minutes of real MetaSchedule measurement): run with ``pytest -m slow tests/test_fault_injection.py``.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time

import numpy as np
import onnxruntime as ort
import pytest

import edgec
from edgec.schedules.database import TuningDatabase

from conftest import mlp_model, save_model
from test_tune import _count_loaded, record_files, run_tune, total_progress, tune_cmd

pytestmark = pytest.mark.slow


def _database_is_whole(db, model) -> None:
    """Loads record by record, and an artifact compiled with it still matches onnxruntime."""
    TuningDatabase(str(db)).sha256()
    assert _count_loaded(db) == len(record_files(db))
    x = np.random.default_rng(0).standard_normal((4, 16)).astype(np.float32)
    want = ort.InferenceSession(model).run(None, {"x": x})[0]
    got = edgec.compile(model, "host", tuning_db=str(db)).run({"x": x})["y"]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_tuner_killed_at_random_moments_leaves_a_valid_database_that_resumes(tmp_path):
    model = save_model(mlp_model(batch=4), tmp_path / "mlp.onnx")  # two tasks
    db = tmp_path / "db"
    rng = random.Random(20261121)
    killed = 0
    for _ in range(4):
        proc = subprocess.Popen(tune_cmd(model, db, 8), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(1.0, 45.0))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            killed += 1
        proc.wait()
        if db.exists():
            _database_is_whole(db, model)
    assert killed >= 2
    before = total_progress(db)
    report = run_tune(model, db, 8)
    assert report["trials_run"] == 8 - before and total_progress(db) == 8
    _database_is_whole(db, model)


def test_two_tuners_and_a_compiler_share_one_database(tmp_path):
    model = save_model(mlp_model(batch=4), tmp_path / "mlp.onnx")
    db = tmp_path / "db"
    TuningDatabase(str(db), create=True)
    tuners = [subprocess.Popen(tune_cmd(model, db, 4, "--max-trials-per-task", 4), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True) for _ in range(2)]
    compiles = 0
    x = np.random.default_rng(1).standard_normal((4, 16)).astype(np.float32)
    np.savez(tmp_path / "in.npz", x=x)
    want = ort.InferenceSession(model).run(None, {"x": x})[0]
    while any(t.poll() is None for t in tuners):
        out = tmp_path / f"a{compiles}.edgec"
        done = subprocess.run([sys.executable, "-m", "edgec", "compile", model, "--tuning-db", str(db), "-o", str(out)],
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
        np.testing.assert_allclose(edgec.load(str(out)).run({"x": x})["y"], want, rtol=1e-4, atol=1e-4)
        compiles += 1
    outs = [t.communicate() for t in tuners]
    assert all(t.returncode == 0 for t in tuners), [o[1][-2000:] for o in outs]
    assert compiles >= 1
    assert total_progress(db) == 8
    _database_is_whole(db, model)
