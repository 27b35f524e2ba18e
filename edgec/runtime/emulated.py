"""Run an aarch64 artifact on this machine: its own bin/edgec-run under ``qemu-aarch64``.

Nothing of the host's TVM takes part: the artifact is unpacked as a device would unpack it, and
the bundled runner, runtime libraries, model library and weights run under user-mode qemu with
the cross sysroot as the dynamic loader's root. ``EDGEC_QEMU`` names another qemu binary
(an empty value means "no qemu here", as if it were not installed).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import weakref

import numpy as np

from edgec.errors import ArtifactError, ExecutionError, ToolchainError
from edgec.runtime.device_bundle import RUNNER, RUNTIME_DIR
from edgec.signature import check_feeds

QEMU = "qemu-aarch64"
SYSROOT = "/usr/aarch64-linux-gnu"
TIMEOUT_S = 1800


def find_qemu() -> str:
    name = os.environ.get("EDGEC_QEMU", QEMU)
    path = shutil.which(name) if name else None
    if not path:
        raise ToolchainError(
            f"{QEMU} not found: install the Debian/Ubuntu package 'qemu-user' (apt-get install qemu-user) "
            "to run aarch64 artifacts on this machine"
        )
    return path


def sysroot() -> str:
    root = os.environ.get("EDGEC_AARCH64_SYSROOT", SYSROOT)
    if not os.path.isfile(os.path.join(root, "lib", "ld-linux-aarch64.so.1")):
        raise ToolchainError(
            f"no aarch64 sysroot at {root}: install the Debian/Ubuntu package 'libc6-arm64-cross' "
            "(it comes with g++-aarch64-linux-gnu) or set EDGEC_AARCH64_SYSROOT"
        )
    return root


def unpack(artifact, folder: str) -> None:
    """Write the artifact's members under ``folder`` the way ``tar xf`` on the device would."""
    for name, data in artifact.files.items():
        path = os.path.join(folder, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
        if name.startswith("bin/"):
            os.chmod(path, 0o755)


def check_bundle(artifact) -> None:
    if artifact.arch != "aarch64":
        raise ArtifactError(f"only aarch64 artifacts run under qemu; {artifact.preset} is {artifact.arch}")
    missing = [n for n in (RUNNER, f"{RUNTIME_DIR}/libtvm_runtime.so", f"{RUNTIME_DIR}/libtvm_ffi.so")
               if n not in artifact.files]
    if missing:
        raise ArtifactError(
            f"this {artifact.preset} artifact carries no native runner ({', '.join(missing)} missing); "
            "rebuild it with this edgec"
        )


class EmulatedRunner:
    """The artifact's own runner, under qemu; ``native=True`` runs it directly (on an aarch64 machine)."""

    emulated = True

    def __init__(self, artifact, *, native: bool = False):
        check_bundle(artifact)
        self.artifact = artifact
        self.native = native
        if not native:
            self.qemu = find_qemu()
            self.sysroot = sysroot()
        self._dir = tempfile.mkdtemp(prefix="edgec-qemu-")
        weakref.finalize(self, shutil.rmtree, self._dir, True)
        unpack(artifact, self._dir)

    def command(self, *runner_args: str) -> list[str]:
        runner = [os.path.join(self._dir, RUNNER), *runner_args]
        return runner if self.native else [self.qemu, "-L", self.sysroot, *runner]

    def smoke(self) -> None:
        """Start the runner with --help: proves the binary and both runtime libraries load."""
        env = dict(os.environ, LD_LIBRARY_PATH=os.path.join(self._dir, RUNTIME_DIR))
        proc = subprocess.run(self.command("--help"), capture_output=True, text=True, env=env, timeout=300)
        if proc.returncode != 2 or "usage: edgec-run" not in proc.stderr:
            lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
            reason = lines[0] if lines else f"exit {proc.returncode}"
            raise ExecutionError(f"the bundled runner does not start under qemu: {reason}")

    def _invoke(self, feeds: dict, extra: list[str], out_dir: str | None) -> str:
        feeds = check_feeds(self.artifact.inputs, feeds)
        work = tempfile.mkdtemp(prefix="call-", dir=self._dir)
        try:
            args = ["--lib", os.path.join(self._dir, "lib", "model.so"),
                    "--weights", os.path.join(self._dir, "weights", "model.params")]
            for i, value in enumerate(feeds.values()):
                path = os.path.join(work, f"input{i}.npy")
                np.save(path, value)
                args += ["--input", path]
            if out_dir:
                args += ["--output-dir", out_dir]
            env = dict(os.environ, LD_LIBRARY_PATH=os.path.join(self._dir, RUNTIME_DIR))
            try:
                proc = subprocess.run(self.command(*args, *extra), capture_output=True, text=True, env=env,
                                      timeout=TIMEOUT_S)
            except subprocess.TimeoutExpired:
                raise ExecutionError(f"the model did not finish under qemu within {TIMEOUT_S} s") from None
            if proc.returncode != 0:
                lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
                where = "" if self.native else " under qemu"
                raise ExecutionError(
                    f"the model failed{where} (exit {proc.returncode}): {lines[0] if lines else 'no message'}"
                )
            return proc.stdout
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def run(self, feeds: dict) -> dict:
        out_dir = tempfile.mkdtemp(prefix="out-", dir=self._dir)
        try:
            self._invoke(feeds, [], out_dir)
            return read_outputs(out_dir, [o.name for o in self.artifact.outputs])
        finally:
            shutil.rmtree(out_dir, ignore_errors=True)

    def time(self, feeds: dict, runs: int, warmup: int = 3) -> list[float]:
        """Seconds per run as the runner measured them inside qemu (emulated time, not the device's)."""
        stdout = self._invoke(feeds, ["--repeat", str(runs), "--warmup", str(warmup)], None)
        return [ms / 1000.0 for ms in parse_timing(stdout)["times_ms"]]


def read_outputs(out_dir: str, names: list[str]) -> dict:
    found = sorted((f for f in os.listdir(out_dir) if f.startswith("output") and f.endswith(".npy")),
                   key=lambda f: int(f[len("output"):-len(".npy")]))
    if len(found) != len(names):
        raise ExecutionError(f"the runner wrote {len(found)} outputs, the manifest lists {len(names)}")
    return {name: np.load(os.path.join(out_dir, f), allow_pickle=False) for name, f in zip(names, found)}


def parse_timing(stdout: str) -> dict:
    for line in reversed(stdout.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise ExecutionError("the runner printed no timing line")
