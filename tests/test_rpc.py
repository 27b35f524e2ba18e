"""Remote execution through TVM's RPC tracker, all on loopback.

A real tracker (``python -m tvm.exec.rpc_tracker``) and one ``edgec rpc-server`` run as separate
processes. The server is on this x86-64 machine, so it runs the uploaded aarch64 artifact's own
runner under qemu-aarch64; the outputs come back over RPC and are compared with onnxruntime.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import onnxruntime as ort
import pytest

import edgec
from edgec.cli import main as cli_main
from edgec.errors import ExecutionError
from edgec.runtime.remote import RemoteRunner

from conftest import mlp_model, save_model

pytestmark = pytest.mark.skipif(
    not (shutil.which("aarch64-linux-gnu-g++") and shutil.which("qemu-aarch64")),
    reason="needs g++-aarch64-linux-gnu and qemu-user (both installed by .ci/run)",
)

KEY = "edgec-test-arm"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(args: list[str], log) -> subprocess.Popen:
    # own process group, so that the server's worker processes stop with it
    return subprocess.Popen([sys.executable, *args], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def _stop(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _wait_for(predicate, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    raise TimeoutError(f"{what} did not come up within {timeout} s")


def _tracker_up(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def _server_registered(port: int) -> bool:
    from tvm import rpc

    try:
        servers = rpc.connect_tracker("127.0.0.1", port).summary()["server_info"]
        return any(s["key"].endswith(":" + KEY) for s in servers)
    except Exception:
        return False


@pytest.fixture(scope="module")
def tracker(tmp_path_factory):
    try:
        import tornado  # noqa: F401
    except ImportError:
        pytest.fail("TVM's RPC tracker needs tornado: pip install tornado")
    logs = tmp_path_factory.mktemp("rpc")
    port = _free_port()
    server_port = _free_port()
    procs = []
    with open(logs / "tracker.log", "w") as tlog, open(logs / "server.log", "w") as slog:
        try:
            procs.append(_start(["-m", "tvm.exec.rpc_tracker", "--host", "127.0.0.1", "--port", str(port),
                                 "--port-end", str(port + 1)], tlog))
            _wait_for(lambda: _tracker_up(port), "the RPC tracker")
            procs.append(_start(["-m", "edgec.cli", "rpc-server", "--tracker", f"127.0.0.1:{port}", "--key", KEY,
                                 "--host", "127.0.0.1", "--port", str(server_port),
                                 "--port-end", str(server_port + 20)], slog))
            _wait_for(lambda: _server_registered(port), "the edgec rpc-server")
            yield ("127.0.0.1", port)
        finally:
            for proc in reversed(procs):
                _stop(proc)


@pytest.fixture(scope="module")
def arm_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("rpc-model")
    onnx_path = save_model(mlp_model(batch="N"), folder / "mlp.onnx")
    art = edgec.compile(onnx_path, "rpi4")
    return onnx_path, art.save(str(folder / "mlp-rpi4.edgec"))


def _reference(onnx_path, feeds):
    return ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"]).run(None, feeds)[0]


def test_remote_run_matches_onnxruntime(tracker, arm_model):
    onnx_path, art_path = arm_model
    feeds = {"x": np.random.default_rng(0).standard_normal((3, 16)).astype(np.float32)}
    got = RemoteRunner(edgec.load(art_path), tracker, KEY).run(feeds)
    np.testing.assert_allclose(got["y"], _reference(onnx_path, feeds), rtol=1e-4, atol=1e-4)


def test_cli_run_and_bench_over_rpc(tracker, arm_model, tmp_path, capsys):
    onnx_path, art_path = arm_model
    feeds = {"x": np.random.default_rng(1).standard_normal((2, 16)).astype(np.float32)}
    np.savez(tmp_path / "in.npz", **feeds)
    addr = f"{tracker[0]}:{tracker[1]}"
    assert cli_main(["run", art_path, "--inputs", str(tmp_path / "in.npz"), "-o", str(tmp_path / "out.npz"),
                     "--rpc-tracker", addr, "--rpc-key", KEY]) == 0
    with np.load(tmp_path / "out.npz") as out:
        np.testing.assert_allclose(out["y"], _reference(onnx_path, feeds), rtol=1e-4, atol=1e-4)
    capsys.readouterr()
    assert cli_main(["bench", art_path, "--inputs", str(tmp_path / "in.npz"), "--runs", "3", "--warmup", "1",
                     "--rpc-tracker", addr, "--rpc-key", KEY, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["where"] == "remote" and result["edgec"]["runs"] == 3 and result["edgec"]["median_ms"] > 0


def test_unknown_key_and_unreachable_tracker_are_clear_errors(tracker, arm_model):
    art = edgec.load(arm_model[1])
    feeds = {"x": np.zeros((1, 16), np.float32)}
    with pytest.raises(ExecutionError, match="no server with key 'no-such-device'"):
        RemoteRunner(art, tracker, "no-such-device").run(feeds)
    with pytest.raises(ExecutionError, match="cannot reach the RPC tracker"):
        RemoteRunner(art, ("127.0.0.1", _free_port()), KEY).run(feeds)


def test_rpc_options_go_together(arm_model, tmp_path):
    np.savez(tmp_path / "in.npz", x=np.zeros((1, 16), np.float32))
    assert cli_main(["bench", arm_model[1], "--rpc-key", KEY]) == 2
