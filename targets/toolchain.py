"""Find the compilers a target needs, and say which package provides a missing one."""

from __future__ import annotations

import glob
import os
import shutil
from typing import Callable

from edgec.errors import ToolchainError
from edgec.targets.presets import Preset

AARCH64_GXX = "aarch64-linux-gnu-g++"
ANDROID_API = 24


def library_format(preset: Preset) -> str:
    """File suffix of the model library: a shared object for every target we link."""
    return "so"


def find_aarch64_gxx() -> str:
    path = shutil.which(AARCH64_GXX)
    if not path:
        raise ToolchainError(
            f"cross compiler {AARCH64_GXX} not found: install the Debian/Ubuntu package "
            "'g++-aarch64-linux-gnu' (apt-get install g++-aarch64-linux-gnu)"
        )
    return path


def find_android_clang(ndk: str | None = None) -> str:
    root = ndk or os.environ.get("ANDROID_NDK_HOME") or os.environ.get("ANDROID_NDK_ROOT")
    if not root:
        raise ToolchainError(
            "android-arm64 needs the Android NDK: set ANDROID_NDK_HOME or pass --ndk PATH"
        )
    pattern = os.path.join(
        root, "toolchains", "llvm", "prebuilt", "*", "bin", f"aarch64-linux-android{ANDROID_API}-clang++"
    )
    found = sorted(glob.glob(pattern))
    if not found:
        raise ToolchainError(
            f"no aarch64-linux-android{ANDROID_API}-clang++ under the NDK at {root}: "
            "point ANDROID_NDK_HOME or --ndk at an unpacked Android NDK (r23 or newer)"
        )
    return found[0]


def check_cuda_compiler() -> None:
    """TVM compiles CUDA kernels with nvcc; make it the backend, or fail naming what to install."""
    if shutil.which("nvcc") is None:
        raise ToolchainError(
            "CUDA targets need nvcc: install the CUDA toolkit (Debian package 'nvidia-cuda-toolkit') "
            "and put nvcc on PATH"
        )
    os.environ.setdefault("TVM_CUDA_COMPILE_MODE", "nvcc")


def linker_for(preset: Preset, ndk: str | None = None) -> Callable | None:
    """The ``fcompile`` for ``export_library``; None means TVM's default host compiler."""
    from tvm.support import cc

    if preset.toolchain == "host":
        return None
    if preset.toolchain == "aarch64-linux-gnu":
        return cc.cross_compiler(find_aarch64_gxx(), options=["-O2"])
    return cc.cross_compiler(find_android_clang(ndk), options=["-O2", "-static-libstdc++"])
