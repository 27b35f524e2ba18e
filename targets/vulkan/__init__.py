"""edgec's Vulkan backend for the stock TVM wheel: GLSL/SPIR-V codegen and a native runtime plugin.

``register()`` installs ``target.build.vulkan``; it runs when edgec resolves a Vulkan target,
and at ``import tvm`` through the ``tvm.backends`` entry point (``_autoload``). Importing this
package is cheap: the code generator and the plugin load only when a kernel is built or run.
"""

from __future__ import annotations


def register() -> None:
    """Make TVM's build find our code generator (idempotent; replaces nothing but our own hook)."""
    import tvm_ffi

    existing = tvm_ffi.get_global_func("target.build.vulkan", allow_missing=True)
    if existing is not None and getattr(register, "_done", False):
        return
    if existing is not None:
        return  # someone else's Vulkan codegen (a TVM built with Vulkan) stays in charge
    tvm_ffi.register_global_func("target.build.vulkan", _build)
    register._done = True


def _build(mod, target):
    from edgec.targets.vulkan.codegen import build

    return build(mod, target)


def load_runtime() -> None:
    """Load the native runtime plugin (``device_api.vulkan`` and the module loader) into this process."""
    from edgec.targets.vulkan import plugin

    plugin.load()


def _autoload() -> None:
    """``tvm.backends`` entry point: TVM calls it while it is being imported."""
    register()


def check_toolchain() -> None:
    """Fail before a long build when the shader compiler is missing."""
    from edgec.targets.vulkan.codegen import _glslang

    _glslang()
