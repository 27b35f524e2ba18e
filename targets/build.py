"""Codegen and link: a scheduled Relax module becomes the bytes of a device library."""

from __future__ import annotations

import os
import tempfile

import tvm
from tvm import relax

from edgec import progress
from edgec.targets.presets import Preset
from edgec.targets.toolchain import check_cuda_compiler, linker_for


def _finalize_passes(gpu: bool) -> list:
    passes = [
        relax.transform.RewriteDataflowReshape(),
        relax.transform.ToNonDataflow(),
        relax.transform.RemovePurityChecking(),
        relax.transform.CallTIRRewrite(),
        relax.transform.StaticPlanBlockMemory(),
    ]
    if gpu:
        passes.append(relax.transform.RewriteCUDAGraph())
    return passes + [
        relax.transform.LowerAllocTensor(),
        relax.transform.KillAfterLastUse(),
        relax.transform.LowerRuntimeBuiltin(),
        relax.transform.ComputePrimValue(),
        relax.transform.VMShapeLower(),
        relax.transform.AttachGlobalSymbol(),
    ]


def build_library(mod: tvm.IRModule, preset: Preset, target: tvm.target.Target, gpu: bool,
                  ndk: str | None = None) -> bytes:
    """Build ``mod`` for ``target`` and link it with the preset's toolchain."""
    fcompile = linker_for(preset, ndk)  # fail on a missing toolchain before the long build
    if preset.device_kind == "cuda":
        check_cuda_compiler()
    if preset.device_kind == "vulkan":
        from edgec.targets import vulkan

        vulkan.check_toolchain()
        vulkan.register()
    progress.stage("build: code generation")
    executable = tvm.compile(mod, target, relax_pipeline=tvm.transform.Sequential(_finalize_passes(gpu)))
    with tempfile.TemporaryDirectory(prefix="edgec-build-") as tmp:
        path = os.path.join(tmp, "model.so")
        progress.stage("build: linking")
        if fcompile is None:
            executable.export_library(path)
        else:
            executable.export_library(path, fcompile=fcompile)
        with open(path, "rb") as f:
            return f.read()
