"""The TVM runtime libraries a device needs: ``libtvm_runtime.so`` and ``libtvm_ffi.so``.

For aarch64 they come from the manylinux aarch64 wheels of exactly the TVM and tvm-ffi versions
installed here, fetched once with ``pip download`` and unpacked into a cache::

    $EDGEC_CACHE/runtime/tvm-<v>_ffi-<v>/aarch64/      (EDGEC_CACHE defaults to ~/.cache/edgec)

The cache is written atomically (a temporary folder renamed into place), so an interrupted
download never leaves a half-filled cache, and later compiles work offline. ``runtime_dir``
(``--runtime-dir``) names a folder that already holds both libraries and skips the cache.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from importlib import metadata

from edgec.errors import ToolchainError

LIBS = ("libtvm_runtime.so", "libtvm_ffi.so")
#: where each library lies inside its wheel
_WHEEL_MEMBERS = {"apache-tvm": "tvm/lib/libtvm_runtime.so", "apache-tvm-ffi": "tvm_ffi/lib/libtvm_ffi.so"}
_WHEEL_PLATFORM = {"aarch64": "manylinux_2_28_aarch64"}
_PYTHON_VERSION = "3.11"  # tvm-ffi wheels are per CPython; the libraries in them are not


def versions() -> dict[str, str]:
    return {dist: metadata.version(dist) for dist in _WHEEL_MEMBERS}


def cache_root() -> str:
    return os.environ.get("EDGEC_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "edgec")


def cache_dir(arch: str) -> str:
    v = versions()
    return os.path.join(cache_root(), "runtime", f"tvm-{v['apache-tvm']}_ffi-{v['apache-tvm-ffi']}", arch)


def host_runtime_dir() -> dict[str, str]:
    """Paths of the libraries of the installed (host) TVM, for builds and runs on this machine."""
    import tvm
    import tvm_ffi

    return {
        "libtvm_runtime.so": os.path.join(os.path.dirname(tvm.__file__), "lib", "libtvm_runtime.so"),
        "libtvm_ffi.so": os.path.join(os.path.dirname(tvm_ffi.__file__), "lib", "libtvm_ffi.so"),
    }


def runtime_lib_dir(arch: str, runtime_dir: str | None = None) -> str:
    """A folder holding both libraries for ``arch``: ``runtime_dir``, else the cache (filled on demand)."""
    if runtime_dir:
        missing = [n for n in LIBS if not os.path.isfile(os.path.join(runtime_dir, n))]
        if missing:
            raise ToolchainError(f"--runtime-dir {runtime_dir} lacks {', '.join(missing)}")
        return runtime_dir
    if arch not in _WHEEL_PLATFORM:
        raise ToolchainError(f"edgec has no device runtime libraries for {arch!r}")
    folder = cache_dir(arch)
    if all(os.path.isfile(os.path.join(folder, n)) for n in LIBS):
        return folder
    _fill_cache(arch, folder)
    return folder


def runtime_libs(arch: str, runtime_dir: str | None = None) -> dict[str, bytes]:
    """``{library file name: bytes}`` for ``arch``."""
    folder = runtime_lib_dir(arch, runtime_dir)
    out = {}
    for name in LIBS:
        with open(os.path.join(folder, name), "rb") as f:
            out[name] = f.read()
    return out


def _how_to_provide(arch: str) -> str:
    v = versions()
    return (
        f"download them once with network access, or pass --runtime-dir DIR holding {' and '.join(LIBS)} "
        f"(from the {_WHEEL_PLATFORM[arch]} wheels apache-tvm=={v['apache-tvm']} and "
        f"apache-tvm-ffi=={v['apache-tvm-ffi']}), or put them in {cache_dir(arch)}"
    )


def _fill_cache(arch: str, folder: str) -> None:
    parent = os.path.dirname(folder)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{arch}-", dir=parent)
    try:
        wheels = os.path.join(staging, "wheels")
        _pip_download(arch, wheels)
        libs = os.path.join(staging, "libs")
        os.makedirs(libs)
        for dist, member in _WHEEL_MEMBERS.items():
            _extract(_find_wheel(wheels, dist, arch), member, libs)
        try:
            os.rename(libs, folder)
        except OSError:
            # another process filled the cache first; theirs is as good as ours
            if not all(os.path.isfile(os.path.join(folder, n)) for n in LIBS):
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _pip_download(arch: str, dest: str) -> None:
    v = versions()
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check",
        "--platform", _WHEEL_PLATFORM[arch], "--python-version", _PYTHON_VERSION, "-d", dest,
        f"apache-tvm=={v['apache-tvm']}", f"apache-tvm-ffi=={v['apache-tvm-ffi']}",
    ]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise ToolchainError(f"cannot download the {arch} TVM runtime libraries ({err}); {_how_to_provide(arch)}") \
            from None
    if proc.returncode != 0:
        lines = [ln for ln in (proc.stderr or proc.stdout).strip().splitlines() if ln.strip()]
        reason = lines[-1].strip() if lines else f"pip exited with {proc.returncode}"
        raise ToolchainError(f"cannot download the {arch} TVM runtime libraries ({reason}); {_how_to_provide(arch)}")


def _find_wheel(folder: str, dist: str, arch: str) -> str:
    prefix = dist.replace("-", "_") + "-"
    for name in sorted(os.listdir(folder)):
        if name.startswith(prefix) and name.endswith(".whl") and arch in name:
            return os.path.join(folder, name)
    raise ToolchainError(f"pip fetched no {arch} wheel of {dist}; {_how_to_provide(arch)}")


def _extract(wheel: str, member: str, dest: str) -> None:
    try:
        with zipfile.ZipFile(wheel) as zf, zf.open(member) as src, \
                open(os.path.join(dest, os.path.basename(member)), "wb") as out:
            shutil.copyfileobj(src, out)
    except (KeyError, zipfile.BadZipFile) as err:
        raise ToolchainError(f"{os.path.basename(wheel)} does not hold {member} ({err})") from None
