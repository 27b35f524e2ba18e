"""``target.build.vulkan``: device PrimFuncs → GLSL → SPIR-V → a runtime module of the plugin.

The module's bytes (what ``export_library`` packs and ``ffi.Module.load_from_bytes.vulkan``
reads back) are, little-endian::

    "EDGECVK1" u32 kernel_count
    per kernel: str name, u32 buffers, u32 scalars {str dtype, u32 offset},
                u32 params {u32 binding, or 0x80000000 | scalar index: the call order}, u32 push_bytes,
                u32 tags {str tag}, u32 local_size[3], u32 feature_mask, u32 grid_push_offset,
                u32 words {u32}, str glsl

``grid_push_offset`` (0xFFFFFFFF: none) is where the runtime writes the 1-D grid size of a kernel
whose grid it may fold into x*y workgroups when it exceeds the device's x limit.

where ``str`` is a u32 length and UTF-8 bytes. Feature bits match the runtime's ``Feature`` enum.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import tempfile

from edgec.errors import CompileError, ToolchainError
from edgec.targets.vulkan.glsl import Kernel, emit_kernel

MAGIC = b"EDGECVK1"
FEATURE_BITS = {"shaderFloat16": 1, "shaderInt8": 2, "shaderInt16": 4, "shaderInt64": 8, "shaderFloat64": 16,
                "storageBuffer8BitAccess": 32, "storageBuffer16BitAccess": 64}
#: SPIR-V 1.3: storage buffers and 8/16-bit storage without extra extensions on Vulkan 1.1 devices
TARGET_ENV = "vulkan1.1"


def _glslang() -> str:
    path = shutil.which("glslangValidator")
    if not path:
        raise ToolchainError("the Vulkan target compiles shaders with glslangValidator: install the Debian "
                             "package glslang-tools")
    return path


def compile_glsl(source: str, name: str) -> bytes:
    """SPIR-V bytes of one compute shader."""
    with tempfile.TemporaryDirectory(prefix="edgec-spv-") as tmp:
        src = os.path.join(tmp, "kernel.comp")
        out = os.path.join(tmp, "kernel.spv")
        with open(src, "w", encoding="utf-8") as f:
            f.write(source)
        proc = subprocess.run([_glslang(), "-V", "--target-env", TARGET_ENV, "-S", "comp", "-o", out, src],
                              capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            errors = [ln for ln in (proc.stdout + proc.stderr).splitlines() if "ERROR" in ln]
            raise CompileError(f"Vulkan codegen: glslangValidator rejected kernel {name}: "
                               f"{errors[0] if errors else proc.returncode}")
        with open(out, "rb") as f:
            return f.read()


def validate(spirv: bytes, name: str) -> None:
    """Run ``spirv-val`` on one module; a CompileError carries its first complaint."""
    tool = shutil.which("spirv-val")
    if not tool:
        raise ToolchainError("validating SPIR-V needs spirv-val: install the Debian package spirv-tools")
    with tempfile.NamedTemporaryFile(suffix=".spv") as f:
        f.write(spirv)
        f.flush()
        proc = subprocess.run([tool, "--target-env", TARGET_ENV, f.name], capture_output=True, text=True,
                              timeout=120)
    if proc.returncode != 0:
        lines = [ln for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()]
        raise CompileError(f"Vulkan codegen: kernel {name} fails spirv-val: {lines[0] if lines else proc.returncode}")


def _str(text: str) -> bytes:
    data = text.encode()
    return struct.pack("<I", len(data)) + data


def pack(kernels: list[tuple[Kernel, bytes]]) -> bytes:
    out = [MAGIC, struct.pack("<I", len(kernels))]
    for k, spirv in kernels:
        push = max((s.offset + s.size for s in k.scalars), default=0)
        params = [s for s in k.scalars if s.offset != k.grid_push_offset]  # the grid word is the runtime's
        out += [_str(k.name), struct.pack("<II", k.num_buffers, len(params))]
        for s in params:
            out += [_str(s.dtype), struct.pack("<I", s.offset)]
        out += [struct.pack("<I", len(k.params))]
        out += [struct.pack("<I", index if kind == "buffer" else 0x80000000 | index) for kind, index in k.params]
        out += [struct.pack("<II", push, len(k.launch_tags))]
        out += [_str(t) for t in k.launch_tags]
        mask = sum(FEATURE_BITS[f] for f in k.features)
        grid = 0xFFFFFFFF if k.grid_push_offset < 0 else k.grid_push_offset
        out += [struct.pack("<IIIII", *k.local_size, mask, grid), struct.pack("<I", len(spirv) // 4), spirv,
                _str(k.source)]
    return b"".join(out)


def generate(mod, int64: bool = True) -> list[tuple[Kernel, bytes]]:
    """Every device function of ``mod`` as (kernel metadata, SPIR-V); ``int64``: the device has shaderInt64."""
    result = []
    for gvar, func in mod.functions_items():
        name = str(func.attrs.get("global_symbol", gvar.name_hint)) if func.attrs else gvar.name_hint
        kernel = emit_kernel(func, name, int64=int64)
        spirv = compile_glsl(kernel.source, name)
        if os.environ.get("EDGEC_VULKAN_VALIDATE") == "1":  # tests and --verify-minded users
            validate(spirv, name)
        result.append((kernel, spirv))
    return result


def build(mod, target):
    """The ``target.build.vulkan`` hook TVM calls for each device module."""
    import tvm

    from edgec.targets.vulkan import plugin

    _check_limits(mod, target)
    kernels = generate(mod, int64=bool(target.attrs.get("supports_int64", False)))
    _check_features(kernels, target)
    blob = pack(kernels)
    plugin.load()
    return tvm.get_global_func("ffi.Module.load_from_bytes.vulkan")(blob)


def _check_limits(mod, target) -> None:
    limit = int(target.attrs.get("max_num_threads", 256)) if hasattr(target, "attrs") else 256
    for gvar, func in mod.functions_items():
        threads = 1
        for tag, extent in _thread_extents(func.body):
            if tag.startswith("threadIdx"):
                threads *= extent
        if threads > limit:
            raise CompileError(f"Vulkan kernel {gvar.name_hint} uses {threads} threads per workgroup; "
                               f"the target allows {limit}")


#: target flag that allows each shader feature (a TVM vulkan target attribute)
_TARGET_FLAG = {"shaderFloat16": "supports_float16", "storageBuffer16BitAccess": "supports_16bit_buffer",
                "shaderInt8": "supports_int8", "storageBuffer8BitAccess": "supports_8bit_buffer",
                "shaderInt64": "supports_int64"}


def _check_features(kernels, target) -> None:
    """A kernel may use a feature only if the target says the device has it; name what is missing."""
    for kernel, _ in kernels:
        for feature in sorted(kernel.features):
            flag = _TARGET_FLAG.get(feature)
            if flag and not bool(target.attrs.get(flag, False)):
                raise CompileError(
                    f"Vulkan kernel {kernel.name} needs the device feature {feature}, which target "
                    f"{target.attrs.get('device_name', 'vulkan')} lacks ({flag} is false); keep the model in "
                    "float32, or compile for a device that has it")


def _thread_extents(stmt) -> list[tuple[str, int]]:
    from tvm import tirx

    found: dict[str, int] = {}

    def walk(s):
        if isinstance(s, tirx.AttrStmt):
            if s.attr_key == "thread_extent" and isinstance(s.value, tirx.IntImm):
                found[s.node.thread_tag] = int(s.value.value)
            walk(s.body)
        elif isinstance(s, tirx.SeqStmt):
            for c in s.seq:
                walk(c)
        elif isinstance(s, (tirx.For, tirx.While)):
            walk(s.body)
        elif isinstance(s, tirx.IfThenElse):
            walk(s.then_case)
            if s.else_case is not None:
                walk(s.else_case)

    walk(stmt)
    return list(found.items())
