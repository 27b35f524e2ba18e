"""Target presets: a name mapped to a TVM target, its host, and what packaging it needs.

A target is resolved in this order: a preset name (or alias), then a path to a JSON file that
holds a TVM target dict (optionally wrapped as ``{"target": {...}, "toolchain": ...}``). Anything
else is a :class:`~edgec.errors.TargetError` that suggests the closest preset names.
"""

from __future__ import annotations

import difflib
import json
import os
from dataclasses import dataclass, field, replace

from edgec.errors import TargetError

#: How the model library is linked, and what runs it.
TOOLCHAINS = ("host", "aarch64-linux-gnu", "android-ndk")

_AARCH64_LINUX = "aarch64-linux-gnu"
_AARCH64_ANDROID = "aarch64-linux-android"


def _arm_cpu(mcpu: str, mattr: list[str], triple: str = _AARCH64_LINUX, cores: int = 4) -> dict:
    return {
        "kind": "llvm",
        "mtriple": triple,
        "mcpu": mcpu,
        "mattr": mattr,
        "num-cores": cores,
        "keys": ["arm_cpu", "cpu"],
    }


def _x86(mcpu: str) -> dict:
    return {"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": mcpu}


def _cuda(arch: str, host: dict, max_threads: int = 1024, shared: int = 49152) -> dict:
    return {
        "kind": "cuda",
        "arch": arch,
        "max_num_threads": max_threads,
        "max_threads_per_block": max_threads,
        "max_shared_memory_per_block": shared,
        "thread_warp_size": 32,
        "host": host,
    }


def _vulkan(host: dict, max_threads: int = 256, shared: int = 16384, fp16: bool = True, int8: bool = True,
            int64: bool = True) -> dict:
    # thread_warp_size 1: reductions synchronize whole workgroups, which is right on every device;
    # a detected device with a fixed subgroup size gets warp-synchronous steps (device.warp_size)
    return {
        "kind": "vulkan",
        "max_num_threads": max_threads,
        "max_threads_per_block": max_threads,
        "max_shared_memory_per_block": shared,
        "thread_warp_size": 1,
        "supports_float16": fp16,
        "supports_16bit_buffer": fp16,
        "supports_int8": int8,
        "supports_8bit_buffer": int8,
        "supports_int64": int64,
        "host": host,
    }


@dataclass(frozen=True)
class Preset:
    """One named target. ``target`` is the TVM target dict, host included for GPU targets."""

    name: str
    description: str
    target: dict
    toolchain: str = "host"
    aliases: tuple[str, ...] = ()
    options: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.toolchain not in TOOLCHAINS:
            raise ValueError(f"preset {self.name}: toolchain {self.toolchain!r} not in {TOOLCHAINS}")

    @property
    def device_kind(self) -> str:
        return self.target["kind"]

    @property
    def host_target(self) -> dict:
        return self.target.get("host", self.target)

    @property
    def arch(self) -> str:
        """CPU architecture of the machine that runs the artifact: ``x86_64`` or ``aarch64``."""
        return self.host_target.get("mtriple", "x86_64").split("-")[0]


_ORIN_CPU = _arm_cpu("cortex-a78ae", ["+neon", "+fp-armv8", "+dotprod", "+fullfp16"], cores=6)
_XAVIER_CPU = _arm_cpu("carmel", ["+neon", "+fp-armv8", "+dotprod", "+fullfp16"], cores=8)

_PRESETS: list[Preset] = [
    Preset("host", "this machine's CPU (LLVM, features detected at compile time)", {}),
    Preset("x86-64-avx2", "x86-64 CPUs with AVX2 and FMA (Haswell and newer, Zen)", _x86("haswell")),
    Preset(
        "x86-64-avx512",
        "x86-64 CPUs with AVX-512 (Skylake-SP, Ice Lake, Zen 4)",
        _x86("skylake-avx512"),
    ),
    Preset(
        "linux-arm64",
        "generic aarch64 Linux (ARMv8-A with NEON)",
        _arm_cpu("generic", ["+neon"]),
        toolchain="aarch64-linux-gnu",
    ),
    Preset(
        "rpi4",
        "Raspberry Pi 4 (Cortex-A72, NEON)",
        _arm_cpu("cortex-a72", ["+neon", "+crc"]),
        toolchain="aarch64-linux-gnu",
    ),
    Preset(
        "rpi5",
        "Raspberry Pi 5 (Cortex-A76, NEON, dotprod, fp16)",
        _arm_cpu("cortex-a76", ["+neon", "+dotprod", "+fullfp16", "+rcpc"]),
        toolchain="aarch64-linux-gnu",
    ),
    Preset(
        "jetson-orin-nano",
        "NVIDIA Jetson Orin Nano: Ampere GPU sm_87, Cortex-A78AE host",
        _cuda("sm_87", _ORIN_CPU),
        toolchain="aarch64-linux-gnu",
        aliases=("jetson", "jetson-orin"),
    ),
    Preset(
        "jetson-agx-orin",
        "NVIDIA Jetson AGX Orin: Ampere GPU sm_87, 12-core Cortex-A78AE host",
        _cuda("sm_87", {**_ORIN_CPU, "num-cores": 12}),
        toolchain="aarch64-linux-gnu",
    ),
    Preset(
        "jetson-xavier",
        "NVIDIA Jetson AGX Xavier: Volta GPU sm_72, Carmel host",
        _cuda("sm_72", _XAVIER_CPU),
        toolchain="aarch64-linux-gnu",
    ),
    Preset(
        "cuda",
        "desktop/datacenter NVIDIA GPU on an x86-64 host (--arch sm_XX; detected when a GPU is present)",
        _cuda("sm_80", _x86("x86-64")),
        options={"arch": "sm_80"},
    ),
    Preset(
        "vulkan",
        "this machine's Vulkan device (limits and features read from it; any vendor, or lavapipe on the CPU)",
        _vulkan(_x86("x86-64")),
    ),
    Preset(
        "android-vulkan",
        "Android phone GPUs through Vulkan (Adreno 6xx/7xx, Mali-G7x, Xclipse limits); aarch64 host code via the NDK",
        # 256-thread workgroups and 32 KiB shared memory are within Adreno 6xx+ and Mali Valhall
        # limits; Int64 is optional on Mali, so kernels are built without it
        _vulkan(_arm_cpu("cortex-a76", ["+neon", "+dotprod", "+fullfp16"], triple=_AARCH64_ANDROID, cores=8),
                shared=32768, int64=False),
        toolchain="android-ndk",
    ),
    Preset(
        "android-arm64",
        "Android phones, aarch64 (Cortex-A76-class big cores, NEON, dotprod); links with the NDK",
        _arm_cpu("cortex-a76", ["+neon", "+dotprod", "+fullfp16"], triple=_AARCH64_ANDROID, cores=8),
        toolchain="android-ndk",
    ),
]

PRESETS: dict[str, Preset] = {}
_ALIASES: dict[str, str] = {}
for _p in _PRESETS:
    if _p.name in PRESETS:
        raise ValueError(f"duplicate preset {_p.name}")
    PRESETS[_p.name] = _p
    for _a in _p.aliases:
        if _a in _ALIASES or _a in PRESETS:
            raise ValueError(f"duplicate preset alias {_a}")
        _ALIASES[_a] = _p.name


def preset_names() -> list[str]:
    return list(PRESETS) + list(_ALIASES)


def _host_cpu_target() -> dict:
    import tvm

    mcpu = str(tvm.target.codegen.llvm_get_system_cpu())
    target = _x86(mcpu) if os.uname().machine == "x86_64" else {"kind": "llvm", "mcpu": mcpu}
    if os.uname().machine == "aarch64":
        target["mtriple"] = _AARCH64_LINUX
    target["num-cores"] = os.cpu_count() or 1
    return target


def _detected_vulkan_target() -> dict:
    """The ``vulkan`` preset for the device here; Vulkan's portable limits when none can be asked."""
    from edgec.targets.vulkan.device import DEFAULT_LIMITS, try_query, warp_size

    info = try_query()
    host = _host_cpu_target()
    if info is None:
        return _vulkan(host, DEFAULT_LIMITS["max_threads_per_block"], DEFAULT_LIMITS["max_shared_memory_per_block"])
    features = set(info["features"])
    target = _vulkan(
        host,
        max_threads=min(256, info["max_threads_per_block"]),
        shared=info["max_shared_memory_per_block"],
        fp16={"shaderFloat16", "storageBuffer16BitAccess"} <= features,
        int8={"shaderInt8", "storageBuffer8BitAccess"} <= features,
        int64="shaderInt64" in features,
    )
    target["device_name"] = info["name"]
    target["thread_warp_size"] = warp_size(info)
    return target


def _cuda_arch(arch: str | None) -> str:
    if arch is None:
        return detect_cuda_arch() or "sm_80"
    if not arch.startswith("sm_") or not arch[3:].isdigit():
        raise TargetError(f"--arch must look like sm_87, got {arch!r}")
    return arch


def detect_cuda_arch() -> str | None:
    """The compute capability of GPU 0 as ``sm_XY``, or None without a GPU."""
    import shutil
    import subprocess

    smi = shutil.which("nvidia-smi")
    if not smi:
        return None
    try:
        out = subprocess.run(
            [smi, "--query-gpu=compute_cap", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout.split()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"sm_{out[0].replace('.', '')}" if out else None


def resolve(spec: str, *, arch: str | None = None) -> Preset:
    """Turn a preset name, alias or JSON file path into a concrete :class:`Preset`."""
    name = _ALIASES.get(spec, spec)
    if name in PRESETS:
        preset = PRESETS[name]
        if name == "host":
            return replace(preset, target=_host_cpu_target())
        if arch is not None and preset.device_kind != "cuda":
            raise TargetError(f"--arch applies to CUDA targets only, not {name!r}")
        if name == "vulkan":
            return replace(preset, target=_detected_vulkan_target())
        if name == "cuda":
            sm = _cuda_arch(arch)
            return replace(preset, target={**preset.target, "arch": sm}, options={"arch": sm})
        if arch is not None:
            return replace(preset, target={**preset.target, "arch": _cuda_arch(arch)})
        return preset
    if spec.endswith(".json") or os.path.sep in spec:
        return _from_json_file(spec)
    close = difflib.get_close_matches(spec, preset_names(), n=3, cutoff=0.4)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise TargetError(
        f"unknown target {spec!r}.{hint} Run 'edgec targets' for the list, or pass a JSON file."
    )


def _from_json_file(path: str) -> Preset:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise TargetError(f"target file {path} does not exist") from None
    except (OSError, ValueError) as err:
        raise TargetError(f"target file {path} is not valid JSON: {err}") from None
    if not isinstance(data, dict):
        raise TargetError(f"target file {path} must hold a JSON object")
    target = data.get("target", data)
    toolchain = data.get("toolchain")
    if not isinstance(target, dict) or "kind" not in target:
        raise TargetError(f"target file {path} has no target 'kind'")
    try:
        import tvm

        tvm.target.Target(target)
    except Exception as err:  # TVM raises a variety of types for a bad target dict
        raise TargetError(f"target file {path} is not a valid TVM target: {_first_line(err)}") from None
    if toolchain is None:
        host = target.get("host", target)
        triple = host.get("mtriple", "") if isinstance(host, dict) else ""
        toolchain = "android-ndk" if "android" in triple else (
            "aarch64-linux-gnu" if triple.startswith("aarch64") else "host")
    if toolchain not in TOOLCHAINS:
        raise TargetError(f"target file {path}: toolchain {toolchain!r} is not one of {TOOLCHAINS}")
    name = os.path.splitext(os.path.basename(path))[0]
    return Preset(name, f"target from {path}", target, toolchain=toolchain)


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[-1] if text else type(err).__name__
