"""Tuning: databases that are applied, resumed, shared, and measured remotely.

Every tuner here is the real ``edgec tune`` process with MetaSchedule measuring real kernels;
budgets are a few trials so that the suite stays short.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import edgec
from edgec.errors import DatabaseError
from edgec.schedules.database import TuningDatabase

from conftest import mlp_model, save_model
from test_rpc import _free_port, _start, _stop, _tracker_up, _wait_for


def _one_kernel_model(path):
    """y[4, 32] = x[4, 16] · W: one tuning task."""
    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((16, 32)).astype(np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], "one",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 32])], [w])
    return save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def tune_cmd(model, db, trials, *extra):
    return [sys.executable, "-m", "edgec.cli", "tune", str(model), "--db", str(db), "--trials", str(trials),
            "--json", *map(str, extra)]


def run_tune(model, db, trials, *extra):
    proc = subprocess.run(tune_cmd(model, db, trials, *extra), capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


def record_files(db):
    return sorted(p for p in db.rglob("*.json")
                  if p.name not in ("workload.json", "progress.json", "target.json", "edgec-tuning-db.json"))


def total_progress(db) -> int:
    return sum(json.loads(p.read_text())["trials"] for p in db.rglob("progress.json"))


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tune")
    model = _one_kernel_model(folder / "one.onnx")
    db = folder / "db"
    report = run_tune(model, db, 2)
    return model, db, report


def test_tuned_database_is_applied_and_still_correct(tuned, tmp_path):
    model, db, report = tuned
    assert report["trials_run"] == 2 and len(report["tasks"]) == 1
    assert report["tasks"][0]["after_ms"] is not None
    assert record_files(db)
    untuned = edgec.compile(model, "host")
    tuned_art = edgec.compile(model, "host", tuning_db=str(db))
    assert tuned_art.files["lib/model.so"] != untuned.files["lib/model.so"]
    assert tuned_art.manifest["tuning_db"] == TuningDatabase(str(db)).sha256()
    x = np.random.default_rng(1).standard_normal((4, 16)).astype(np.float32)
    want = ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_allclose(tuned_art.run({"x": x})["y"], want, rtol=1e-4, atol=1e-5)


def test_rerun_repeats_no_finished_work(tuned):
    model, db, _ = tuned
    before = record_files(db)
    report = run_tune(model, db, 2)
    assert report["trials_run"] == 0 and report["stopped_by"] == "done"
    assert record_files(db) == before


def test_database_for_another_target_is_ignored_with_a_warning(tuned):
    model, db, _ = tuned
    art = edgec.compile(model, "x86-64-avx2", tuning_db=str(db))
    assert art.manifest["tuning_db"] is None
    assert any("no records for this target" in note for note in art.report.notes)


def test_corrupted_database_is_a_clear_error_and_left_alone(tuned, tmp_path):
    model, db, _ = tuned
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(db, broken)
    victim = record_files(broken)[0]
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 2])
    with pytest.raises(DatabaseError, match=victim.name):
        edgec.compile(model, "host", tuning_db=str(broken))
    proc = subprocess.run([sys.executable, "-m", "edgec.cli", "compile", model, "--tuning-db", str(broken),
                           "-o", str(tmp_path / "x.edgec")], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and victim.name in proc.stderr
    assert victim.read_bytes() == data[: len(data) // 2]
    assert not (tmp_path / "x.edgec").exists()


def test_killed_tuner_leaves_a_valid_database_and_resumes(tmp_path):
    model = save_model(mlp_model(batch=4), tmp_path / "mlp.onnx")  # two tasks
    db = tmp_path / "db"
    proc = subprocess.Popen(tune_cmd(model, db, 4), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for(lambda: any(db.rglob("progress.json")) or proc.poll() is not None, "first tuning chunk", 600)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    done_before = total_progress(db)
    assert 0 < done_before <= 4
    TuningDatabase(str(db)).sha256()  # loads
    edgec.compile(model, "host", tuning_db=str(db))  # every record parses
    report = run_tune(model, db, 4)
    assert report["trials_run"] == 4 - done_before
    assert total_progress(db) == 4
    assert all(t["trials"] == 2 for t in report["tasks"])


def test_two_tuners_on_one_database_lose_nothing(tmp_path):
    model = _one_kernel_model(tmp_path / "one.onnx")
    db = tmp_path / "db"
    TuningDatabase(str(db), create=True)
    procs = [subprocess.Popen(tune_cmd(model, db, 2, "--max-trials-per-task", 4), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=900) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    reports = [json.loads(o[0]) for o in outs]
    assert sum(r["trials_run"] for r in reports) == total_progress(db) == 4
    memdb_count = _count_loaded(db)
    assert memdb_count == len(record_files(db)) >= 2


def _count_loaded(db) -> int:
    import tvm
    from tvm.s_tir import meta_schedule as ms

    from edgec.schedules.database import target_key
    from edgec.targets import resolve

    memdb = ms.database.MemoryDatabase()
    return TuningDatabase(str(db)).load_into(memdb, target_key(tvm.target.Target(resolve("host").target)))


def test_tuning_measures_on_rpc_devices(tmp_path):
    """A tracker and two servers on loopback: MetaSchedule's RPC runner measures there."""
    import tornado  # noqa: F401 - TVM's RPC tracker needs it (a dev dependency); fail loudly without
    model = _one_kernel_model(tmp_path / "one.onnx")
    port = _free_port()
    procs = []
    with open(tmp_path / "tracker.log", "w") as log:
        try:
            procs.append(_start(["-m", "tvm.exec.rpc_tracker", "--host", "127.0.0.1", "--port", str(port),
                                 "--port-end", str(port + 1)], log))
            _wait_for(lambda: _tracker_up(port), "RPC tracker", 60)
            for _ in range(2):
                server_port = _free_port()
                procs.append(_start(["-m", "tvm.exec.rpc_server", "--host", "127.0.0.1",
                                     "--port", str(server_port), "--port-end", str(server_port + 50),
                                     "--tracker", f"127.0.0.1:{port}", "--key", "edgec-test"], log))
            _wait_for(lambda: _servers(port) >= 2, "two RPC servers", 120)
            report = run_tune(model, tmp_path / "db", 2, "--rpc-tracker", f"127.0.0.1:{port}",
                              "--rpc-key", "edgec-test", "--rpc-devices", 2)
        finally:
            for proc in procs:
                _stop(proc)
    assert report["trials_run"] == 2
    assert report["tasks"][0]["after_ms"] is not None  # measured remotely, not a failure marker


def _servers(port: int) -> int:
    from tvm import rpc

    try:
        summary = rpc.connect_tracker("127.0.0.1", port).summary()
        return sum(1 for s in summary["server_info"] if s["key"].endswith("edgec-test"))
    except Exception:
        return 0


def test_pruned_database_keeps_the_fastest_record_and_still_applies(tuned, tmp_path):
    import shutil

    model, db, _ = tuned
    copy = tmp_path / "db"
    shutil.copytree(db, copy)
    pruned = TuningDatabase(str(copy))
    key = pruned.target_keys()[0]
    before = _count_loaded(copy)
    counts = pruned.prune(key, top=1)
    assert counts["records"] == 1 and counts["removed_records"] == before - 1
    art = edgec.compile(model, "host", tuning_db=str(copy))
    assert art.manifest["tuning_db"] == pruned.sha256()
    assert any(n == "1 kernels scheduled from tuning records" for n in art.report.notes)
    assert pruned.prune(key, keep_workloads=set())["records"] == 0


def test_cost_priority_spends_chunks_where_time_is_saved():
    from edgec.schedules.tuner import TaskReport, _order

    big = TaskReport("big", 1.0, "a", before_ms=1.0)
    small = TaskReport("small", 2.0, "b", before_ms=0.1)
    runs = {"a": 0, "b": 0}
    picked = []
    for _ in range(6):
        tr = min((big, small), key=lambda t: _order(t, runs[t.workload], "cost"))
        runs[tr.workload] += 1
        picked.append(tr.name)
    assert picked.count("big") == 5 and picked[:5] == ["big"] * 5  # 1 ms vs 2 x 0.1 ms
    round_robin = [min((big, small), key=lambda t: _order(t, n, "round-robin")).name for n in (0,)]
    assert round_robin == ["big"]
    assert _order(big, 1, "round-robin") > _order(small, 0, "round-robin")  # a round ends before the next


# -- a shipped database (bench/tune_suite.py makes one) ---------------------------------------------

def test_shipped_database_from_another_cpu_is_ignored_with_a_note(tuned, tmp_path, caplog):
    import tvm

    from edgec.schedules.apply import _load_databases

    _, db, _ = tuned  # records for this machine's host CPU
    other = tvm.target.Target({"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": "skylake-avx512"})
    with caplog.at_level("INFO"):
        memdb, notes, digest = _load_databases([], other, [str(db)])
    assert memdb is None and digest is None
    assert any("tuned on another CPU" in n for n in notes)
    # logged below WARNING: the CLI prints no extra stderr line for a database nobody asked for
    assert [r.levelname for r in caplog.records if "tuned on another CPU" in r.getMessage()] == ["INFO"]
    memdb, notes, digest = _load_databases([], tvm.target.Target(resolve_host()), [str(db)])
    assert memdb is not None and digest == TuningDatabase(str(db)).sha256() and not notes


def resolve_host():
    from edgec.targets import resolve

    return resolve("host").target


def test_shipped_database_speeds_up_pinned_compiles_and_matches_onnxruntime(tmp_path, monkeypatch):
    """The database shipped for host is applied to a pinned-shape compile on the CPU it was tuned
    on (ignored, with a report note, on another), and the tuned artifact matches onnxruntime."""
    import onnxruntime as ort

    from edgec.schedules.shipped import shipped_database

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples"))
    import models as examples

    shipped = shipped_database("host")
    assert shipped is not None, "schedules/databases/host is missing"
    _, input_name, shape, _ = examples.EXAMPLES["mobilenet_v2"]
    path = examples.export_onnx("mobilenet_v2", str(tmp_path / "m.onnx"))
    art = edgec.compile(path, "host", {input_name: "x".join(map(str, shape))})
    here = _host_key() in TuningDatabase(shipped).target_keys()
    if here:
        assert art.manifest["tuning_db"] == TuningDatabase(shipped).sha256()
        assert any(n.endswith("kernels scheduled from tuning records") and not n.startswith("0 ")
                   for n in art.report.notes), art.report.notes
        monkeypatch.setenv("EDGEC_NO_SHIPPED_DB", "1")
        untuned = edgec.compile(path, "host", {input_name: "x".join(map(str, shape))})
        assert untuned.manifest["tuning_db"] is None
        assert untuned.files["lib/model.so"] != art.files["lib/model.so"]
    else:
        assert art.manifest["tuning_db"] is None
        assert any("tuned on another CPU" in n for n in art.report.notes)
    x = examples.example_input("mobilenet_v2")
    want = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, {input_name: x})[0]
    np.testing.assert_allclose(art.run({input_name: x})["logits"], want, rtol=1e-4, atol=1e-4)


def _host_key():
    import tvm

    from edgec.schedules.database import target_key
    from edgec.targets import resolve

    return target_key(tvm.target.Target(resolve("host").target))
