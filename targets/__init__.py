"""Targets: presets, toolchains, and the code generators we add to TVM."""

from edgec.targets.presets import PRESETS, Preset, detect_cuda_arch, preset_names, resolve

__all__ = ["PRESETS", "Preset", "detect_cuda_arch", "preset_names", "resolve"]
