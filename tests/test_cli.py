"""The command line, run as a user runs it: a subprocess, checking exit codes and messages."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import onnxruntime as ort
import pytest

from conftest import mlp_model


def edgec(*args, cwd=None, env=None):
    return subprocess.run([sys.executable, "-m", "edgec.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env={**os.environ, **(env or {})}, timeout=600)


def assert_clean_error(proc, code, *fragments):
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    err = proc.stderr.strip()
    assert "Traceback" not in err
    last = err.splitlines()[-1]
    assert last.startswith("Error:"), err
    for fragment in fragments:
        assert fragment in last, (fragment, last)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A host artifact of the MLP model, compiled once through the CLI with --verify."""
    folder = tmp_path_factory.mktemp("cli")
    model = mlp_model()
    model.ir_version = 10
    path = folder / "mlp.onnx"
    path.write_bytes(model.SerializeToString())
    out = folder / "mlp.edgec"
    proc = edgec("compile", path, "-o", out, "--verify", "--json")
    assert proc.returncode == 0, proc.stderr
    return folder, path, out, json.loads(proc.stdout)


def test_compile_verify_reports_errors_per_output(built):
    _, _, out, report = built
    assert out.exists()
    assert report["verification"]["executed"] is True
    assert report["verification"]["ok"] is True
    assert report["verification"]["outputs"][0]["name"] == "y"


def test_run_writes_outputs_matching_onnxruntime(built):
    folder, path, out, _ = built
    x = np.random.default_rng(3).standard_normal((5, 16)).astype(np.float32)
    np.savez(folder / "in.npz", x=x)
    proc = edgec("run", out, "--inputs", folder / "in.npz", "-o", folder / "out.npz")
    assert proc.returncode == 0, proc.stderr
    got = np.load(folder / "out.npz")["y"]
    want = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_inspect_json_lists_signature_and_checksums(built):
    _, _, out, _ = built
    proc = edgec("inspect", out, "--json")
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads(proc.stdout)
    assert manifest["inputs"] == [{"name": "x", "shape": ["N", 16], "dtype": "float32"}]
    assert set(manifest["files"]) == {"lib/model.so", "weights/model.params"}
    assert manifest["preset"] == "host"
    assert len(manifest["model"]["sha256"]) == 64


def test_bench_against_onnxruntime_prints_ratio(built):
    _, path, out, _ = built
    proc = edgec("bench", out, "--runs", 5, "--threads", 1, "--against-onnxruntime", path, "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["edgec"]["runs"] == 5 and result["onnxruntime"]["runs"] == 5
    assert result["ratio"] == pytest.approx(result["edgec"]["median_ms"] / result["onnxruntime"]["median_ms"])


def test_targets_lists_every_preset():
    proc = edgec("targets", "--json")
    names = {t["name"] for t in json.loads(proc.stdout)["targets"]}
    assert {"host", "x86-64-avx2", "x86-64-avx512", "linux-arm64", "rpi4", "rpi5", "jetson-orin-nano",
            "jetson-agx-orin", "jetson-xavier", "cuda", "android-arm64"} <= names
    assert "jetson" in edgec("targets").stdout  # the alias


def test_unknown_target_suggests_close_names(built):
    _, path, _, _ = built
    assert_clean_error(edgec("compile", path, "-t", "rpi55"), 2, "unknown target", "rpi5")


def test_missing_model_file(tmp_path):
    assert_clean_error(edgec("compile", tmp_path / "nope.onnx"), 2, "does not exist")


def test_truncated_model_leaves_nothing_at_output(built, tmp_path):
    _, path, _, _ = built
    bad = tmp_path / "cut.onnx"
    bad.write_bytes(path.read_bytes()[:200])
    out = tmp_path / "cut.edgec"
    assert_clean_error(edgec("compile", bad, "-o", out), 2, "cut.onnx")
    assert not out.exists()
    assert os.listdir(tmp_path) == ["cut.onnx"]


def test_debug_shows_the_traceback(tmp_path):
    proc = edgec("--debug", "compile", tmp_path / "nope.onnx")
    assert proc.returncode == 2
    assert "Traceback" in proc.stderr


def test_bad_input_option_is_a_usage_error(built):
    _, path, _, _ = built
    proc = edgec("compile", path, "--input", "x=1x16")
    assert proc.returncode == 2
    assert "NAME:DIMS" in proc.stderr and "Traceback" not in proc.stderr


def test_run_with_wrong_inputs(built):
    folder, _, out, _ = built
    np.savez(folder / "wrong_name.npz", image=np.zeros((1, 16), np.float32))
    assert_clean_error(edgec("run", out, "--inputs", folder / "wrong_name.npz"), 2, "missing ['x']", "image")
    np.savez(folder / "wrong_dtype.npz", x=np.zeros((1, 16), np.float64))
    assert_clean_error(edgec("run", out, "--inputs", folder / "wrong_dtype.npz"), 2, "float64")
    np.savez(folder / "wrong_shape.npz", x=np.zeros((1, 17), np.float32))
    assert_clean_error(edgec("run", out, "--inputs", folder / "wrong_shape.npz"), 2, "(1, 17)")


def test_corrupted_artifact_is_refused(built, tmp_path):
    _, _, out, _ = built
    data = bytearray(out.read_bytes())
    lib_at = data.find(b"\x7fELF")
    data[lib_at + 200] ^= 0xFF
    bad = tmp_path / "flipped.edgec"
    bad.write_bytes(bytes(data))
    np.savez(tmp_path / "in.npz", x=np.zeros((1, 16), np.float32))
    assert_clean_error(edgec("run", bad, "--inputs", tmp_path / "in.npz"), 2, "corrupted", "lib/model.so")
    cut = tmp_path / "cut.edgec"
    cut.write_bytes(out.read_bytes()[:1000])
    assert_clean_error(edgec("inspect", cut), 2)


def test_cuda_artifact_without_gpu_says_so(built, tmp_path):
    _, path, _, _ = built
    out = tmp_path / "mlp-cuda.edgec"
    proc = edgec("compile", path, "-t", "cuda", "--arch", "sm_80", "-o", out, "--verify", "--json")
    assert proc.returncode == 0, proc.stderr
    verification = json.loads(proc.stdout)["verification"]
    if verification["executed"]:
        assert verification["ok"]  # a GPU is present: it really ran
    else:
        assert "not executed" in verification["note"]
