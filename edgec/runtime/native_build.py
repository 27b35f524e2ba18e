"""Build the native runner ``edgec-run`` (native/runner.cc) for a device architecture.

The binary links against the TVM runtime libraries of that architecture (see device_libs) and
finds them at run time through an rpath of ``$ORIGIN/../runtime``, the artifact's layout. Builds
are cached under ``$EDGEC_CACHE/runner/<key>/<arch>/edgec-run``, keyed by the runner source, the
TVM versions and the compiler, and written atomically.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile

from edgec.errors import ToolchainError
from edgec.runtime import device_libs

SOURCE = os.path.join(os.path.dirname(__file__), "native", "runner.cc")
BINARY = "edgec-run"


def _compiler(arch: str) -> str:
    from edgec.runtime import host_arch

    if arch == host_arch():
        path = shutil.which("g++")
        if not path:
            raise ToolchainError("building the native runner needs g++: install the Debian package 'g++'")
        return path
    if arch == "aarch64":
        from edgec.targets.toolchain import find_aarch64_gxx

        return find_aarch64_gxx()
    raise ToolchainError(f"edgec cannot build its native runner for {arch!r}")


def _include_dirs() -> list[str]:
    import tvm
    import tvm_ffi

    return [os.path.join(os.path.dirname(tvm_ffi.__file__), "include"),
            os.path.join(os.path.dirname(tvm.__file__), "include")]


# Bump when the flags below change, so cached runners built without them are rebuilt.
_REPRODUCIBLE_FLAGS_VERSION = 1


def _path_independence_flags() -> list[str]:
    """Headers use __FILE__: map this machine's paths away so the binary is the same everywhere."""
    flags = [f"-ffile-prefix-map={d}=include" for d in _include_dirs()]
    return flags + [f"-ffile-prefix-map={os.path.dirname(SOURCE)}=native"]


def _lib_dirs(arch: str, runtime_dir: str | None) -> list[str]:
    from edgec.runtime import host_arch

    if arch == host_arch() and not runtime_dir:
        return sorted({os.path.dirname(p) for p in device_libs.host_runtime_dir().values()})
    return [device_libs.runtime_lib_dir(arch, runtime_dir)]


def runner_path(arch: str, runtime_dir: str | None = None) -> str:
    """Path of an ``edgec-run`` binary for ``arch``, built on first use."""
    compiler = _compiler(arch)
    with open(SOURCE, "rb") as f:
        source = f.read()
    versions = device_libs.versions()
    key = hashlib.sha256(source + repr((sorted(versions.items()), os.path.basename(compiler), arch,
                                        _REPRODUCIBLE_FLAGS_VERSION)).encode())
    folder = os.path.join(device_libs.cache_root(), "runner", key.hexdigest()[:16], arch)
    path = os.path.join(folder, BINARY)
    if os.path.isfile(path):
        return path
    lib_dirs = _lib_dirs(arch, runtime_dir)
    os.makedirs(os.path.dirname(folder), exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{arch}-", dir=os.path.dirname(folder))
    try:
        cmd = [compiler, "-std=c++17", "-O2", "-o", os.path.join(staging, BINARY), SOURCE]
        cmd += [f"-I{d}" for d in _include_dirs()] + [f"-L{d}" for d in lib_dirs]
        cmd += _path_independence_flags()
        # keep libtvm_runtime NEEDED even though no symbol of it is named: it registers the VM loader
        cmd += ["-Wl,--no-as-needed", "-ltvm_runtime", "-ltvm_ffi", "-Wl,-rpath,$ORIGIN/../runtime"]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        except (OSError, subprocess.TimeoutExpired) as err:
            raise ToolchainError(f"cannot build the native runner with {compiler}: {err}") from None
        if proc.returncode != 0:
            errors = [ln for ln in proc.stderr.splitlines() if "error" in ln] or proc.stderr.strip().splitlines()
            raise ToolchainError(f"building the native runner with {compiler} failed: {errors[0] if errors else ''}")
        try:
            os.rename(staging, folder)
        except OSError:
            if not os.path.isfile(path):  # not a concurrent build that won the race
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return path
