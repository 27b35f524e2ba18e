"""Reliability guarantees (docs/RELIABILITY.md), each checked through the real ``edgec`` command.

* every case of the bad-input corpus (tests/corpus) ends in its documented error class with exit
  code 2, one line on stderr, within the time bound, and nothing written;
* a crash inside the compiler (a real SIGSEGV, injected at a chosen stage) is a one-line
  CompileError naming that stage, down to the ONNX node, and leaves nothing behind;
* Ctrl-C during a compile leaves no temporary file and no artifact;
* a full disk while writing the artifact is a clear error that leaves no partial file.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import edgec
from conftest import save_model

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "corpus"))
import check  # noqa: E402
import make_corpus  # noqa: E402


def edgec_cli(*args, env=None, **kwargs):
    return subprocess.Popen([sys.executable, "-m", "edgec", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})}, **kwargs)


def finish(proc, timeout=300):
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def one_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err[-2000:]
    return lines[0]


def wide_mlp(path, width=256) -> str:
    """An MLP whose weights (~0.5 MB) make the artifact and the build take a moment."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((width, width)).astype(np.float32), f"w{i}")
             for i in range(2)]
    nodes = [helper.make_node("MatMul", ["x", "w0"], ["h"], name="fc0"),
             helper.make_node("Relu", ["h"], ["r"], name="relu"),
             helper.make_node("MatMul", ["r", "w1"], ["y"], name="fc1")]
    graph = helper.make_graph(nodes, "wide", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, width])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, width])], inits)
    return save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = str(tmp_path_factory.mktemp("corpus"))
    make_corpus.write(folder)
    return folder


def test_every_corpus_case_is_a_clean_documented_error(corpus):
    results = check.run_all(corpus)
    failures = [f"{r['name']}: {r['why']}" for r in results if not r["ok"]]
    assert len(results) >= 50
    assert not failures, "\n".join(failures)


def test_corpus_covers_every_kind_the_guarantee_names(corpus):
    with open(os.path.join(corpus, "cases.json")) as f:
        names = " ".join(c["name"] for c in json.load(f))
    for kind in ("truncated", "wrong_type", "cycle", "dangling", "missing_initializer", "shape_mismatch",
                 "unknown_domain", "future", "non_utf8", "2pow40", "pt2_", "artifact_flipped_byte",
                 "artifact_missing_file", "artifact_newer_format", "db_truncated"):
        assert kind in names, kind


@pytest.mark.parametrize("where, stage", [("node 'relu'", "import: node 'relu' (Relu)"),
                                          ("build: linking", "build: linking")])
def test_compiler_crash_is_contained_and_named(tmp_path, where, stage):
    model = wide_mlp(tmp_path / "m.onnx", width=32)
    out = tmp_path / "out" / "m.edgec"
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    code, _, err = finish(edgec_cli("compile", model, "-o", out,
                                    env={"EDGEC_INJECT_CRASH": where, "TMPDIR": str(scratch)}))
    line = one_line(err)
    assert code == 1 and "crashed (SIGSEGV)" in line and stage in line, line
    assert not out.exists() and not os.listdir(scratch)
    # the same command without the fault compiles: the crash was the injected one, and contained
    code, _, err = finish(edgec_cli("compile", model, "-o", out))
    assert code == 0, err[-2000:]
    assert edgec.load(str(out)).manifest["outputs"][0]["name"] == "y"


def test_ctrl_c_during_compile_leaves_no_temporary_files(tmp_path):
    model = wide_mlp(tmp_path / "m.onnx")
    out_dir, scratch = tmp_path / "out", tmp_path / "tmp"
    out_dir.mkdir()
    scratch.mkdir()
    proc = edgec_cli("compile", model, "-o", out_dir / "m.edgec",
                     env={"EDGEC_INJECT_STALL": "build: linking", "TMPDIR": str(scratch)})
    deadline = time.time() + 300
    # the build's temporary folder exists while the compiler stalls inside it
    while not any(name.startswith("edgec-build-") for _, dirs, _ in os.walk(scratch) for name in dirs):
        assert proc.poll() is None and time.time() < deadline, proc.communicate()[1][-2000:]
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    code, _, err = finish(proc, timeout=60)
    assert code == 130 and "Interrupted" in one_line(err)
    assert not os.listdir(out_dir) and not os.listdir(scratch)


def test_ctrl_c_at_random_moments_leaves_all_or_nothing(tmp_path):
    model = wide_mlp(tmp_path / "m.onnx", width=64)
    rng = random.Random(9)
    for round_ in range(3):
        out_dir, scratch = tmp_path / f"out{round_}", tmp_path / f"tmp{round_}"
        out_dir.mkdir()
        scratch.mkdir()
        proc = edgec_cli("compile", model, "-o", out_dir / "m.edgec", env={"TMPDIR": str(scratch)})
        time.sleep(rng.uniform(0.5, 6.0))
        proc.send_signal(signal.SIGINT)
        code, _, err = finish(proc, timeout=120)
        assert code in (0, 130), err[-2000:]
        assert not os.listdir(scratch)
        left = os.listdir(out_dir)
        # all or nothing: a success wrote the artifact; an interrupt that came after the atomic
        # rename (a window of microseconds) leaves it whole; nothing else is ever there
        assert left in ([], ["m.edgec"]) and (code != 0 or left), left
        if left:
            edgec.load(str(out_dir / "m.edgec"))  # whole and valid


def _small_mount(folder, size_kb: int) -> bool:
    folder.mkdir()
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(folder)],
                              capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


def test_full_disk_while_writing_the_artifact(tmp_path):
    """A 128 KiB tmpfs (or, where mounting is not allowed, a 128 KiB file size limit) for a 0.5 MB artifact."""
    model = wide_mlp(tmp_path / "m.onnx")
    disk = tmp_path / "disk"
    mounted = _small_mount(disk, 128)
    try:
        limit = None if mounted else (lambda: __import__("resource").setrlimit(
            __import__("resource").RLIMIT_FSIZE, (128 * 1024, 128 * 1024)))
        if not mounted:
            disk.mkdir(exist_ok=True)
        proc = subprocess.Popen([sys.executable, "-m", "edgec", "compile", model, "-o", str(disk / "m.edgec")],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=limit)
        code, _, err = finish(proc)
        line = one_line(err)
        assert code == 2 and ("No space left" in line or "too large" in line), line
        assert os.listdir(disk) == []
    finally:
        if mounted:
            subprocess.run(["umount", str(disk)], timeout=30)


def test_two_command_line_compiles_are_byte_identical(tmp_path):
    """Separate processes, separate temporary folders, the same inputs: the same bytes."""
    model = wide_mlp(tmp_path / "m.onnx", width=32)
    outs = [tmp_path / "a.edgec", tmp_path / "b.edgec"]
    for out in outs:
        code, _, err = finish(edgec_cli("compile", model, "-o", out))
        assert code == 0, err[-2000:]
    assert outs[0].read_bytes() == outs[1].read_bytes()
