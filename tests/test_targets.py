"""Target presets and their resolution."""

from __future__ import annotations

import json

import pytest
import tvm

from edgec.errors import TargetError, ToolchainError
from edgec.targets import PRESETS, resolve
from edgec.targets import toolchain


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_is_a_valid_tvm_target(name):
    preset = resolve(name)
    target = tvm.target.Target(preset.target)
    assert target.kind.name == preset.device_kind


@pytest.mark.parametrize("name,mcpu,feature", [
    ("rpi4", "cortex-a72", "+neon"), ("rpi5", "cortex-a76", "+dotprod"),
    ("jetson-orin-nano", "cortex-a78ae", "+dotprod"), ("android-arm64", "cortex-a76", "+neon"),
])
def test_arm_presets_set_cpu_and_features(name, mcpu, feature):
    host = resolve(name).host_target
    assert host["mcpu"] == mcpu and feature in host["mattr"]
    assert host["mtriple"].startswith("aarch64")


def test_aliases_and_arch():
    assert resolve("jetson").name == "jetson-orin-nano"
    assert resolve("cuda", arch="sm_90").target["arch"] == "sm_90"
    with pytest.raises(TargetError, match="sm_87"):
        resolve("cuda", arch="ampere")
    with pytest.raises(TargetError, match="CUDA targets only"):
        resolve("rpi5", arch="sm_87")


def test_json_target_file(tmp_path):
    path = tmp_path / "board.json"
    path.write_text(json.dumps({"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mcpu": "cortex-a55"}))
    preset = resolve(str(path))
    assert preset.toolchain == "aarch64-linux-gnu" and preset.name == "board"
    path.write_text("{not json")
    with pytest.raises(TargetError, match="not valid JSON"):
        resolve(str(path))
    path.write_text(json.dumps({"kind": "no-such-kind"}))
    with pytest.raises(TargetError, match="not a valid TVM target"):
        resolve(str(path))


def test_unknown_target_lists_close_names():
    with pytest.raises(TargetError, match="jetson"):
        resolve("jetsn")


def test_missing_cross_compiler_names_the_package(monkeypatch):
    monkeypatch.setattr(toolchain.shutil, "which", lambda _name: None)
    with pytest.raises(ToolchainError, match="g\\+\\+-aarch64-linux-gnu"):
        toolchain.find_aarch64_gxx()
    with pytest.raises(ToolchainError, match="nvcc"):
        toolchain.check_cuda_compiler()


def test_android_without_ndk_names_the_variable(monkeypatch):
    monkeypatch.delenv("ANDROID_NDK_HOME", raising=False)
    monkeypatch.delenv("ANDROID_NDK_ROOT", raising=False)
    with pytest.raises(ToolchainError, match="ANDROID_NDK_HOME"):
        toolchain.find_android_clang(None)
