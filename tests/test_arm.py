"""aarch64 artifacts: cross-compiled, bundled with their runtime and runner, run under qemu-aarch64.

Every numeric check runs the artifact's own bin/edgec-run (cross-compiled C++, the bundled
aarch64 libtvm_runtime.so) under user-mode qemu and compares with onnxruntime on this host.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

import edgec
from edgec.artifact import Artifact
from edgec.cli import main as cli_main
from edgec.errors import ArtifactError, ExecutionError, ToolchainError
from edgec.runtime.emulated import SYSROOT

from conftest import mlp_model, save_model

pytestmark = pytest.mark.skipif(
    not (shutil.which("aarch64-linux-gnu-g++") and shutil.which("qemu-aarch64")),
    reason="needs g++-aarch64-linux-gnu and qemu-user (both installed by .ci/run)",
)

ARM_PRESETS = ["linux-arm64", "rpi4", "rpi5"]
RTOL, ATOL = 1e-4, 1e-4


class SmallCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
            nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=8), nn.ReLU6(),
            nn.Conv2d(8, 16, 1), nn.ReLU(),
        )
        self.head = nn.Linear(16, 10)

    def forward(self, x):
        return self.head(self.body(x).mean(dim=(2, 3)))


class TinyAttention(nn.Module):
    """One pre-norm encoder block: LayerNorm, 2-head self-attention, GELU MLP, residuals."""

    def __init__(self, dim=16, heads=2):
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).reshape(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        att = torch.softmax(q @ k.transpose(-1, -2) / (d // self.heads) ** 0.5, dim=-1)
        x = x + self.proj((att @ v).transpose(1, 2).reshape(b, t, d))
        return x + self.mlp(self.norm2(x))


MODELS = {"cnn": (SmallCNN, (1, 3, 16, 16)), "attention": (TinyAttention, (1, 8, 16))}


def _export(name: str, folder) -> str:
    ctor, shape = MODELS[name]
    torch.manual_seed(0)
    model = ctor().eval()
    path = os.path.join(str(folder), f"{name}.onnx")
    torch.onnx.export(model, (torch.randn(*shape),), path, input_names=["x"], output_names=["y"],
                      opset_version=17, dynamo=False)
    proto = onnx.load(path)
    proto.ir_version = 10
    onnx.save(proto, path)
    return path


@pytest.fixture(scope="module")
def onnx_models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("arm-models")
    return {name: _export(name, folder) for name in MODELS}


def _onnxruntime(path: str, feeds: dict) -> list[np.ndarray]:
    return ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, feeds)


def _feeds(shape, seed=0):
    return {"x": np.random.default_rng(seed).standard_normal(shape).astype(np.float32)}


# -- numerics under qemu -----------------------------------------------------------------------


@pytest.mark.parametrize("preset", ARM_PRESETS)
@pytest.mark.parametrize("model", sorted(MODELS))
def test_arm_artifact_matches_onnxruntime_under_qemu(onnx_models, model, preset, tmp_path):
    art = edgec.compile(onnx_models[model], preset)
    assert art.arch == "aarch64"
    assert {"bin/edgec-run", "runtime/libtvm_runtime.so", "runtime/libtvm_ffi.so", "README.txt"} <= set(art.files)
    assert art.files["bin/edgec-run"][:4] == b"\x7fELF" and art.files["bin/edgec-run"][18] == 0xB7  # EM_AARCH64
    path = art.save(str(tmp_path / f"{model}-{preset}.edgec"))
    feeds = _feeds(MODELS[model][1])
    got = edgec.load(path).run(feeds, emulate=True)
    want = _onnxruntime(onnx_models[model], feeds)
    np.testing.assert_allclose(got["y"], want[0], rtol=RTOL, atol=ATOL)


def test_symbolic_batch_runs_at_two_sizes_under_qemu(tmp_path):
    path = save_model(mlp_model(batch="N"), tmp_path / "mlp.onnx")
    art = edgec.compile(path, "rpi4")
    assert art.manifest["inputs"][0]["shape"][0] == "N"
    for batch in (1, 5):
        feeds = {"x": np.random.default_rng(batch).standard_normal((batch, 16)).astype(np.float32)}
        got = art.run(feeds, emulate=True)["y"]
        assert got.shape == (batch, 4)
        np.testing.assert_allclose(got, _onnxruntime(path, feeds)[0], rtol=RTOL, atol=ATOL)


def test_bundle_runs_as_the_readme_says(onnx_models, tmp_path):
    """Untar and run bin/edgec-run by hand, as on the device, with the command line README.txt gives."""
    art = edgec.compile(onnx_models["cnn"], "rpi5")
    readme = art.files["README.txt"].decode()
    assert "LD_LIBRARY_PATH=runtime bin/edgec-run --lib lib/model.so --weights weights/model.params" in readme
    folder = tmp_path / "device"
    with tarfile.open(art.save(str(tmp_path / "cnn.edgec"))) as tar:
        tar.extractall(folder, filter="data")
    assert os.access(folder / "bin" / "edgec-run", os.X_OK)
    feeds = _feeds(MODELS["cnn"][1], seed=3)
    np.save(folder / "x.npy", feeds["x"])
    (folder / "out").mkdir()
    cmd = ["qemu-aarch64", "-L", SYSROOT, "bin/edgec-run", "--lib", "lib/model.so", "--weights",
           "weights/model.params", "--input", "x.npy", "--output-dir", "out", "--repeat", "3", "--warmup", "1"]
    proc = subprocess.run(cmd, cwd=folder, env=dict(os.environ, LD_LIBRARY_PATH="runtime"),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert '"runs": 3' in proc.stdout and '"median_ms"' in proc.stdout
    got = np.load(folder / "out" / "output0.npy")
    np.testing.assert_allclose(got, _onnxruntime(onnx_models["cnn"], feeds)[0], rtol=RTOL, atol=ATOL)
    bad = subprocess.run(["qemu-aarch64", "-L", SYSROOT, "bin/edgec-run", "--lib", "lib/model.so", "--bogus", "1"],
                         cwd=folder, capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "unknown option --bogus" in bad.stderr


def test_emulated_timing_reports_runs(onnx_models):
    from edgec.runtime.emulated import EmulatedRunner

    art = edgec.compile(onnx_models["cnn"], "linux-arm64")
    seconds = EmulatedRunner(art).time(_feeds(MODELS["cnn"][1]), runs=4, warmup=1)
    assert len(seconds) == 4 and all(s > 0 for s in seconds)


def test_native_runner_on_the_host_matches_the_python_runtime(onnx_models, tmp_path):
    """The same runner.cc, built for x86-64, agrees with TVM's Python VM on a host artifact."""
    from edgec.runtime import native_build
    from edgec.runtime.device_libs import host_runtime_dir

    art = edgec.compile(onnx_models["attention"], "host")
    folder = tmp_path / "host"
    with tarfile.open(art.save(str(tmp_path / "a.edgec"))) as tar:
        tar.extractall(folder, filter="data")
    feeds = _feeds(MODELS["attention"][1], seed=7)
    np.save(folder / "x.npy", feeds["x"])
    libs = os.pathsep.join(sorted({os.path.dirname(p) for p in host_runtime_dir().values()}))
    proc = subprocess.run([native_build.runner_path("x86_64"), "--lib", "lib/model.so", "--weights",
                           "weights/model.params", "--input", "x.npy", "--output-dir", "."],
                          cwd=folder, env=dict(os.environ, LD_LIBRARY_PATH=libs), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    np.testing.assert_allclose(np.load(folder / "output0.npy"), art.run(feeds)["y"], rtol=1e-5, atol=1e-6)


# -- the CLI -----------------------------------------------------------------------------------


def test_cli_compile_verify_and_run_emulate(onnx_models, tmp_path, capsys):
    out = str(tmp_path / "cnn.edgec")
    assert cli_main(["compile", onnx_models["cnn"], "-t", "rpi4", "-o", out, "--verify"]) == 0
    assert "verify (qemu-aarch64): ok" in capsys.readouterr().out
    feeds = _feeds(MODELS["cnn"][1], seed=11)
    np.savez(tmp_path / "in.npz", **feeds)
    assert cli_main(["run", out, "--inputs", str(tmp_path / "in.npz"), "-o", str(tmp_path / "out.npz"),
                     "--emulate"]) == 0
    with np.load(tmp_path / "out.npz") as got:
        np.testing.assert_allclose(got["y"], _onnxruntime(onnx_models["cnn"], feeds)[0], rtol=RTOL, atol=ATOL)
    assert cli_main(["bench", out, "--emulate", "--runs", "3", "--warmup", "0", "--json"]) == 0
    assert '"where": "qemu"' in capsys.readouterr().out


def test_cli_runtime_dir(onnx_models, tmp_path, capsys):
    from edgec.runtime.device_libs import runtime_lib_dir

    given = tmp_path / "rt"
    shutil.copytree(runtime_lib_dir("aarch64"), given)
    out = str(tmp_path / "m.edgec")
    assert cli_main(["compile", onnx_models["cnn"], "-t", "rpi5", "-o", out, "--runtime-dir", str(given)]) == 0
    with open(given / "libtvm_ffi.so", "rb") as f:
        assert edgec.load(out).files["runtime/libtvm_ffi.so"] == f.read()
    os.unlink(given / "libtvm_runtime.so")
    capsys.readouterr()
    assert cli_main(["compile", onnx_models["cnn"], "-t", "rpi5", "-o", out, "--runtime-dir", str(given)]) == 2
    err = capsys.readouterr().err
    assert "--runtime-dir" in err and "lacks libtvm_runtime.so" in err


def test_android_without_ndk_is_a_clear_error(onnx_models, monkeypatch, tmp_path, capsys):
    monkeypatch.delenv("ANDROID_NDK_HOME", raising=False)
    monkeypatch.delenv("ANDROID_NDK_ROOT", raising=False)
    assert cli_main(["compile", onnx_models["cnn"], "-t", "android-arm64", "-o", str(tmp_path / "a.edgec")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("Error: android-arm64 needs the Android NDK") and "ANDROID_NDK_HOME" in err
    assert len(err.strip().splitlines()) == 1


# -- broken environments and bundles -------------------------------------------------------------


def test_missing_qemu_names_the_package(onnx_models, monkeypatch, tmp_path, capsys):
    art = edgec.compile(onnx_models["cnn"], "linux-arm64")
    monkeypatch.setenv("EDGEC_QEMU", "")  # documented override: "no qemu on this machine"
    with pytest.raises(ToolchainError, match="qemu-user"):
        art.run(_feeds(MODELS["cnn"][1]), emulate=True)
    path = art.save(str(tmp_path / "a.edgec"))
    np.savez(tmp_path / "in.npz", **_feeds(MODELS["cnn"][1]))
    assert cli_main(["run", path, "--inputs", str(tmp_path / "in.npz"), "--emulate"]) == 2
    assert "apt-get install qemu-user" in capsys.readouterr().err


def test_missing_cross_compiler_names_the_package(onnx_models, monkeypatch, tmp_path, capsys):
    import edgec.targets.toolchain as toolchain

    real_which = shutil.which
    monkeypatch.setattr(toolchain.shutil, "which",
                        lambda name, *a, **k: None if name == "aarch64-linux-gnu-g++" else real_which(name, *a, **k))
    with pytest.raises(ToolchainError, match="g\\+\\+-aarch64-linux-gnu"):
        edgec.compile(onnx_models["cnn"], "rpi4")
    # the command line compiles in a child process: hide the cross compiler from it through PATH
    (tmp_path / "bin").mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    assert cli_main(["compile", onnx_models["cnn"], "-t", "rpi4", "-o", str(tmp_path / "a.edgec")]) == 2
    assert "apt-get install g++-aarch64-linux-gnu" in capsys.readouterr().err


def test_truncated_and_corrupted_bundles(onnx_models, tmp_path, capsys):
    art = edgec.compile(onnx_models["cnn"], "rpi5")
    data = art.to_bytes()
    truncated = tmp_path / "truncated.edgec"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(ArtifactError, match="truncated|corrupted"):
        edgec.load(str(truncated))
    np.savez(tmp_path / "in.npz", **_feeds(MODELS["cnn"][1]))
    assert cli_main(["run", str(truncated), "--inputs", str(tmp_path / "in.npz"), "--emulate"]) == 2
    assert "truncated" in capsys.readouterr().err

    # a bit flipped inside the runtime library: the checksum catches it before anything runs
    flipped = bytearray(data)
    at = data.index(art.files["runtime/libtvm_runtime.so"][4096:4160])
    flipped[at] ^= 0xFF
    (tmp_path / "flipped.edgec").write_bytes(bytes(flipped))
    with pytest.raises(ArtifactError, match="checksum of runtime/libtvm_runtime.so"):
        edgec.load(str(tmp_path / "flipped.edgec"))

    # consistent checksums but no runner (an artifact from before runners were bundled)
    stripped = Artifact(dict(art.manifest), {k: v for k, v in art.files.items() if k != "bin/edgec-run"})
    with pytest.raises(ArtifactError, match="no native runner"):
        stripped.run(_feeds(MODELS["cnn"][1]), emulate=True)

    # consistent checksums around a runner that is not a program
    broken = Artifact(dict(art.manifest), {**art.files, "bin/edgec-run": b"#!garbage\n" * 10})
    with pytest.raises(ExecutionError, match="under qemu"):
        broken.run(_feeds(MODELS["cnn"][1]), emulate=True)


def test_runtime_libraries_unavailable_is_a_toolchain_error(onnx_models, monkeypatch, tmp_path):
    """Empty cache and no reachable package index: the error says how to provide the libraries."""
    monkeypatch.setenv("EDGEC_CACHE", str(tmp_path / "cache"))
    for var, value in {"PIP_INDEX_URL": "http://127.0.0.1:9/simple", "PIP_EXTRA_INDEX_URL": "",
                       "PIP_FIND_LINKS": "", "PIP_NO_CACHE_DIR": "1", "PIP_RETRIES": "0",
                       "PIP_TIMEOUT": "2"}.items():
        monkeypatch.setenv(var, value)
    with pytest.raises(ToolchainError, match="--runtime-dir"):
        edgec.compile(onnx_models["cnn"], "rpi4")
    assert not os.path.exists(tmp_path / "cache" / "runtime") or not any(
        n.endswith(".so") for _, _, files in os.walk(tmp_path / "cache" / "runtime") for n in files)


def test_jetson_verify_says_gpu_kernels_were_not_executed(onnx_models, tmp_path, capsys):
    path = save_model(mlp_model(batch=2), tmp_path / "mlp.onnx")
    if not shutil.which("nvcc"):  # no CUDA toolkit here: the compile must say what to install
        assert cli_main(["compile", path, "-t", "jetson-orin-nano", "-o", str(tmp_path / "j.edgec")]) == 2
        assert "nvcc" in capsys.readouterr().err
        return
    assert cli_main(["compile", path, "-t", "jetson-orin-nano", "-o", str(tmp_path / "j.edgec"), "--verify"]) == 0
    out = capsys.readouterr().out
    assert "verify: NOT EXECUTED" in out and "GPU kernels were NOT executed" in out
    assert "runner and TVM runtime libraries load" in out
    art = edgec.load(str(tmp_path / "j.edgec"))
    assert "runtime/libtvm_runtime.so" in art.files and "JetPack" in art.files["README.txt"].decode()


# -- the example models (examples/models.py) ------------------------------------------------------

EXAMPLES_DIR = os.path.join(os.path.dirname(__file__), "..", "examples")


def _example(name, tmp_path):
    sys.path.insert(0, EXAMPLES_DIR)
    try:
        import models
    finally:
        sys.path.remove(EXAMPLES_DIR)
    path = models.export_onnx(name, str(tmp_path / f"{name}.onnx"))
    x = models.example_input(name)
    return path, {models.EXAMPLES[name][1]: x}


# each takes 8-25 s here (compile + qemu), under the ~60 s that would make it a `slow` test
@pytest.mark.parametrize("preset", ARM_PRESETS)
@pytest.mark.parametrize("name", ["mobilenet_v2", "resnet18", "transformer"])
def test_example_models_under_qemu(name, preset, tmp_path):
    path, feeds = _example(name, tmp_path)
    art = edgec.compile(path, preset, {k: v.shape for k, v in feeds.items()})
    got = art.run(feeds, emulate=True)
    np.testing.assert_allclose(got["logits"], _onnxruntime(path, feeds)[0], rtol=1e-3, atol=1e-4)


def test_ocr_detector_export_runs_under_qemu(tmp_path):
    """The acceptance case: a DBNet-style text detector exported by the TorchScript exporter (the
    shape of PaddleOCR's det model), cross-compiled for rpi5 and run by the bundled runner."""
    from models_zoo import ZOO

    model = ZOO["dbnet"]
    path = model.export(str(tmp_path))
    dims = model.sizes[0]
    pins = {n: (tuple(d if isinstance(d, int) else dims[d] for d in shape), dtype)
            for n, (shape, dtype) in model.inputs.items()}
    art = edgec.compile(path, "rpi5", inputs=pins)
    feeds = model.feeds(dims, seed=2)
    got = art.run(feeds, emulate=True)["maps"]
    want = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    np.testing.assert_allclose(got, want, rtol=model.rtol, atol=model.atol)
