"""The example LiDAR networks compiled with edgec (from the nn.Module, a .pt2 and the exported ONNX)
against the PyTorch modules, end to end from raw points."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest
import torch

import edgec
from edgec import nn as enn

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "examples"))
from lidar import crop, synthetic_scan  # noqa: E402
from sparse_models import (CenterPointBackbone, MinkUNet, randomize, small_centerpoint,  # noqa: E402
                           small_minkunet)

# a 10 m × 10 m patch 10 m ahead of the sensor: road, lane markings, a car or two, ~2k points
PATCH_X, PATCH_Y = (10.0, 20.0), (-5.0, 5.0)
MINK_RANGE = (10.0, -5.0, -2.5, 20.0, 5.0, 3.5)
CP_RANGE = (9.6, -5.4, -5.0, 20.4, 5.4, 3.2)
INPUTS = {"points": (("P", 4), "float32")}


@pytest.fixture(scope="module")
def scans():
    """Two patches of different sizes: one artifact has to serve both."""
    return [crop(synthetic_scan(seed), PATCH_X, PATCH_Y) for seed in (0, 1)]


def _expected(model, points):
    with torch.no_grad():
        return [o.numpy() for o in model(torch.from_numpy(points))]


def _compare(outputs: dict, expected, what: str):
    got = list(outputs.values())
    assert len(got) == len(expected), what
    for g, e in zip(got, expected):
        assert g.shape == e.shape, f"{what}: {g.shape} vs {e.shape}"
        if e.dtype.kind == "i":
            np.testing.assert_array_equal(g, e, err_msg=what)
        else:
            scale = max(1.0, float(np.abs(e).max()))
            np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-4 * scale, err_msg=what)


def test_scan_looks_like_lidar():
    scan = synthetic_scan(0)
    assert 90_000 <= len(scan) <= 130_000 and scan.dtype == np.float32 and scan.shape[1] == 4
    ground = scan[:, 2] < -1.5
    assert 0.3 < ground.mean() < 0.8                                # mostly ground, plenty of objects
    r = np.hypot(scan[ground, 0], scan[ground, 1])
    # ground returns lie on rings, one per beam: a quarter of the range bins hold nearly all of them
    # (points spread uniformly over the ground would put under 40% there)
    hist, _ = np.histogram(r[(r > 4) & (r < 20)], bins=400)
    assert np.sort(hist)[::-1][:100].sum() > 0.85 * hist.sum()
    assert 0.0 <= scan[:, 3].min() and scan[:, 3].max() <= 1.0
    assert 1_000 < len(crop(scan, PATCH_X, PATCH_Y)) < 5_000


def test_minkunet_two_stages_from_module(scans):
    model = small_minkunet(MINK_RANGE, stages=2)
    art = edgec.compile(model, target="host", inputs=INPUTS, layout="none")
    for i, pts in enumerate(scans):
        _compare(art.run({"points": pts}), _expected(model, pts), f"MinkUNet nn.Module, scan {i}")


def test_centerpoint_from_onnx(scans, tmp_path):
    model = small_centerpoint(CP_RANGE)
    assert model.bev_shape == (18, 18, 2)
    path = tmp_path / "centerpoint.onnx"
    enn.export_onnx(model, (torch.from_numpy(scans[0]),), path, output_names=["heatmap", "boxes"])
    art = edgec.compile(str(path), target="host", inputs=INPUTS)
    for i, pts in enumerate(scans):
        _compare(art.run({"points": pts}), _expected(model, pts), f"CenterPoint ONNX, scan {i}")


def test_centerpoint_from_pt2(scans, tmp_path):
    model = small_centerpoint(CP_RANGE, seed=1)
    program = torch.export.export(model, (torch.from_numpy(scans[0]),),
                                  dynamic_shapes=({0: torch.export.Dim.AUTO},))
    pt2 = tmp_path / "centerpoint.pt2"
    torch.export.save(program, str(pt2))
    art = edgec.compile(str(pt2), target="host", layout="none")
    for i, pts in enumerate(scans):
        _compare(art.run({"points": pts}), _expected(model, pts), f"CenterPoint .pt2, scan {i}")


@pytest.mark.slow
def test_minkunet_four_stages_module_and_onnx(scans, tmp_path):
    model = small_minkunet(MINK_RANGE)
    art = edgec.compile(model, target="host", inputs=INPUTS)
    for i, pts in enumerate(scans):
        _compare(art.run({"points": pts}), _expected(model, pts), f"MinkUNet nn.Module, scan {i}")
    path = tmp_path / "minkunet.onnx"
    enn.export_onnx(model, (torch.from_numpy(scans[0]),), path, output_names=["logits", "coords"])
    art = edgec.compile(str(path), target="host", inputs=INPUTS)
    for i, pts in enumerate(scans):
        _compare(art.run({"points": pts}), _expected(model, pts), f"MinkUNet ONNX, scan {i}")


@pytest.mark.slow
def test_centerpoint_from_module(scans):
    model = small_centerpoint(CP_RANGE, seed=2)
    art = edgec.compile(model, target="host", inputs=INPUTS)
    for i, pts in enumerate(scans):
        _compare(art.run({"points": pts}), _expected(model, pts), f"CenterPoint nn.Module, scan {i}")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["minkunet", "centerpoint"])
def test_full_size_networks_on_full_scan(name, tmp_path):
    """The full-width networks at voxel 0.05 m / 0.075 m on a whole ~100k-point scan, from ONNX."""
    model = randomize(MinkUNet() if name == "minkunet" else CenterPointBackbone())
    scan = synthetic_scan(2)
    path = tmp_path / f"{name}.onnx"
    enn.export_onnx(model, (torch.from_numpy(scan),), path)
    art = edgec.compile(str(path), target="host", inputs=INPUTS)
    _compare(art.run({"points": scan}), _expected(model, scan), f"{name} full scan")


@pytest.mark.gpu
def test_example_networks_on_cuda(scans, tmp_path):
    """Both example networks built for CUDA (ONNX route) against the PyTorch modules on the CPU."""
    for name, model in (("minkunet", small_minkunet(MINK_RANGE, stages=2)), ("centerpoint", small_centerpoint(CP_RANGE))):
        path = tmp_path / f"{name}.onnx"
        enn.export_onnx(model, (torch.from_numpy(scans[0]),), path)
        art = edgec.compile(str(path), target="cuda", inputs=INPUTS)
        for i, pts in enumerate(scans):
            _compare(art.run({"points": pts}), _expected(model, pts), f"{name} on CUDA, scan {i}")
