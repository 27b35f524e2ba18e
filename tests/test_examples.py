"""The example models end to end: ONNX and PyTorch frontends on the host against onnxruntime and
PyTorch eager, one artifact at two batch sizes, and the GPU presets (compile only without a GPU)."""

from __future__ import annotations

import os
import sys

import numpy as np
import onnxruntime as ort
import pytest
import torch

import edgec

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from examples import models  # noqa: E402


@pytest.fixture(scope="module")
def onnx_paths(tmp_path_factory):
    return models.export_all(str(tmp_path_factory.mktemp("examples")))


@pytest.fixture(scope="module")
def host_artifacts(onnx_paths):
    return {name: edgec.compile(path, "host") for name, path in onnx_paths.items()}


def _eager(name, x):
    with torch.no_grad():
        return models.build(name)(torch.from_numpy(x)).numpy()


@pytest.mark.parametrize("name", list(models.EXAMPLES))
def test_host_matches_onnxruntime_and_pytorch(name, onnx_paths, host_artifacts):
    input_name = models.EXAMPLES[name][1]
    x = models.example_input(name, seed=3)
    got = host_artifacts[name].run({input_name: x})["logits"]
    session = ort.InferenceSession(onnx_paths[name], providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(got, session.run(None, {input_name: x})[0], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(got, _eager(name, x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ["mobilenet_v2", "transformer"])
def test_symbolic_batch_runs_at_two_sizes(name, onnx_paths, host_artifacts):
    artifact = host_artifacts[name]
    input_name = models.EXAMPLES[name][1]
    assert artifact.manifest["inputs"][0]["shape"][0] == "batch"
    for batch in (1, 3):
        x = models.example_input(name, batch=batch, seed=batch)
        got = artifact.run({input_name: x})["logits"]
        assert got.shape[0] == batch
        np.testing.assert_allclose(got, _eager(name, x), rtol=1e-4, atol=1e-5)


def test_saved_artifact_reloads_and_runs(onnx_paths, host_artifacts, tmp_path):
    path = str(tmp_path / "resnet18.edgec")
    host_artifacts["resnet18"].save(path)
    x = models.example_input("resnet18", batch=2)
    np.testing.assert_allclose(edgec.load(path).run({"x": x})["logits"], _eager("resnet18", x), rtol=1e-4, atol=1e-5)


def test_pt2_from_torch_export_save(tmp_path):
    model = models.build("resnet18")
    x = models.example_input("resnet18", seed=5)
    program = torch.export.export(model, (torch.from_numpy(x),))
    path = str(tmp_path / "resnet18.pt2")
    torch.export.save(program, path)
    artifact = edgec.compile(path, "host")
    (name,) = [s["name"] for s in artifact.manifest["inputs"]]
    (got,) = artifact.run({name: x}).values()
    np.testing.assert_allclose(got, _eager("resnet18", x), rtol=1e-4, atol=1e-5)


def test_nn_module_with_example_inputs():
    model = models.build("mobilenet_v2")
    artifact = edgec.compile(model, "host", inputs={"x": ((1, 3, 64, 64), "float32")})
    x = np.random.default_rng(9).standard_normal((1, 3, 64, 64)).astype(np.float32)
    (got,) = artifact.run({"x": x}).values()
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_nn_module_transformer_int64_tokens():
    model = models.build("transformer")
    artifact = edgec.compile(model, "host", inputs={"tokens": ((2, 32), "int64")})
    tokens = models.example_input("transformer", batch=2, seed=4)
    (got,) = artifact.run({"tokens": tokens}).values()
    np.testing.assert_allclose(got, _eager("transformer", tokens), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("target", ["cuda", "jetson"])
def test_gpu_presets_compile(target, onnx_paths, tmp_path):
    artifact = edgec.compile(onnx_paths["mobilenet_v2"], target)
    assert artifact.manifest["device"] == "cuda"
    assert artifact.manifest["arch"] == ("aarch64" if target == "jetson" else "x86_64")
    path = str(tmp_path / f"mobilenet_v2.{target}.edgec")
    artifact.save(path)
    assert edgec.load(path).manifest["preset"] == artifact.manifest["preset"]


@pytest.mark.gpu
@pytest.mark.parametrize("name", list(models.EXAMPLES))
def test_cuda_artifact_runs_on_gpu(name, onnx_paths):
    artifact = edgec.compile(onnx_paths[name], "cuda")
    input_name = models.EXAMPLES[name][1]
    x = models.example_input(name, batch=2, seed=6)
    got = artifact.run({input_name: x})["logits"]
    np.testing.assert_allclose(got, _eager(name, x), rtol=1e-3, atol=1e-4)
