"""Build, cache and load the native Vulkan runtime plugin (``runtime/vulkan_runtime.cc``).

The plugin is compiled on first use with the host C++ compiler against the tvm-ffi headers and
``tvm/runtime/device_api.h`` from the installed wheels, and cached under::

    $EDGEC_CACHE/vulkan/<sha256 of source, compiler and TVM versions>/libedgec_vulkan.so

It opens the Vulkan loader itself (dlopen), so building and loading it needs no Vulkan SDK
beyond the headers (Debian ``libvulkan-dev``), and no device.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
import threading

from edgec.errors import ToolchainError

SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "runtime", "vulkan_runtime.cc")
LIBRARY_NAME = "libedgec_vulkan.so"
_lock = threading.Lock()


def _paths() -> dict[str, str]:
    import tvm
    import tvm_ffi
    import tvm_ffi.libinfo

    tvm_dir = os.path.dirname(tvm.__file__)
    return {
        "tvm_include": os.path.join(tvm_dir, "include"),
        "ffi_include": tvm_ffi.libinfo.find_include_path(),
        "dlpack_include": tvm_ffi.libinfo.find_dlpack_include_path(),
        "tvm_lib": os.path.join(tvm_dir, "lib"),
        "ffi_lib": os.path.join(os.path.dirname(tvm_ffi.__file__), "lib"),
    }


def _vulkan_headers() -> str | None:
    """A folder holding only ``vulkan/`` (and ``vk_video/``), safe to put on a cross compiler's path."""
    for root in (os.environ.get("VULKAN_SDK", ""), "/usr", "/usr/local"):
        include = os.path.join(root, "include") if root else ""
        if include and os.path.isfile(os.path.join(include, "vulkan", "vulkan.h")):
            break
    else:
        return None
    staged = os.path.join(cache_root(), "vulkan", "include")
    if not os.path.isfile(os.path.join(staged, "vulkan", "vulkan.h")):
        tmp = tempfile.mkdtemp(prefix=".include-", dir=os.path.dirname(staged) if os.path.isdir(
            os.path.dirname(staged)) else _mkdirs(os.path.dirname(staged)))
        for sub in ("vulkan", "vk_video"):
            if os.path.isdir(os.path.join(include, sub)):
                shutil.copytree(os.path.join(include, sub), os.path.join(tmp, sub))
        try:
            os.rename(tmp, staged)
        except OSError:  # staged by a concurrent build
            shutil.rmtree(tmp, ignore_errors=True)
    return staged


def _mkdirs(path: str) -> str:
    os.makedirs(path, exist_ok=True)
    return path


def _compiler(cxx: str | None = None) -> str:
    cxx = cxx or os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++") or shutil.which("clang++")
    if not cxx:
        raise ToolchainError("the Vulkan runtime plugin needs a C++17 compiler: install g++")
    return cxx


def _key(cxx: str, flags: list[str]) -> str:
    from importlib import metadata

    h = hashlib.sha256()
    with open(SOURCE, "rb") as f:
        h.update(f.read())
    h.update(" ".join([cxx, *flags, metadata.version("apache-tvm"), metadata.version("apache-tvm-ffi")]).encode())
    return h.hexdigest()[:16]


def cache_root() -> str:
    return os.environ.get("EDGEC_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "edgec")


def build(cxx: str | None = None, extra_flags: list[str] | None = None, link_tvm: bool = True) -> str:
    """Path of the compiled plugin for this machine's TVM, building it if the cache lacks it."""
    cxx = _compiler(cxx)
    headers = _vulkan_headers()
    if headers is None:
        raise ToolchainError("the Vulkan runtime plugin needs the Vulkan headers: install libvulkan-dev "
                             "(vulkan/vulkan.h), or set VULKAN_SDK")
    p = _paths()
    flags = ["-std=c++17", "-O2", "-fPIC", "-shared", f"-I{p['ffi_include']}", f"-I{p['dlpack_include']}",
             f"-I{p['tvm_include']}", f"-I{headers}", *(extra_flags or [])]
    libs = [f"-L{p['tvm_lib']}", f"-L{p['ffi_lib']}", "-ltvm_runtime", "-ltvm_ffi"] if link_tvm else []
    folder = os.path.join(cache_root(), "vulkan", _key(cxx, flags + libs))
    out = os.path.join(folder, LIBRARY_NAME)
    if os.path.isfile(out):
        return out
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".build-", suffix=".so", dir=folder)
    os.close(fd)
    cmd = [cxx, *flags, SOURCE, "-o", tmp, *libs, "-ldl"]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as err:
        os.unlink(tmp)
        raise ToolchainError(f"building the Vulkan runtime plugin failed: {err}") from None
    if proc.returncode != 0:
        os.unlink(tmp)
        errors = [ln for ln in proc.stderr.splitlines() if "error" in ln] or proc.stderr.splitlines()[-1:]
        raise ToolchainError(f"building the Vulkan runtime plugin failed: {errors[0] if errors else proc.returncode}")
    os.replace(tmp, out)  # atomic: a concurrent build just replaces an identical file
    return out


def load(path: str | None = None) -> None:
    """Load the plugin into this process, registering ``device_api.vulkan`` and its module loader.

    A process holds one copy: once any plugin (built here or shipped in an artifact) has
    registered its functions, later calls do nothing.
    """
    with _lock:
        if _registered():
            return
        path = os.path.abspath(path or build())
        try:
            ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
        except OSError as err:
            raise ToolchainError(f"cannot load the Vulkan runtime plugin {path}: {err}") from None
        if not _registered():
            raise ToolchainError(f"the Vulkan runtime plugin {path} registered nothing")


def _registered() -> bool:
    import tvm

    return tvm.get_global_func("edgec.vulkan.device_info", allow_missing=True) is not None


def library_bytes(cxx: str | None = None, cross: bool = False) -> bytes:
    """The plugin to ship inside an artifact: for this machine, or built with the cross compiler ``cxx``.

    A cross build links no TVM library (none for the device is at hand); the symbols resolve
    against the TVM runtime the device process has already loaded.
    """
    flags = ["-static-libstdc++"] if cross else None
    with open(build(cxx, flags, link_tvm=not cross), "rb") as f:
        return f.read()
