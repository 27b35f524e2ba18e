"""Run artifacts: in this process, under qemu for ARM, or on a device over TVM RPC."""

from __future__ import annotations

import platform

from edgec.errors import ArtifactError


def host_arch() -> str:
    machine = platform.machine().lower()
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(machine, machine)


def runner_for(artifact, *, emulate: bool = False):
    """The runner that can execute ``artifact`` here."""
    if emulate:
        from edgec.runtime.emulated import EmulatedRunner

        return EmulatedRunner(artifact)
    if artifact.arch != host_arch():
        hint = " (use --emulate to run it under qemu)" if artifact.arch == "aarch64" else ""
        raise ArtifactError(
            f"this artifact was built for {artifact.preset} ({artifact.arch}); this machine is "
            f"{host_arch()}{hint}"
        )
    from edgec.runtime.host import HostRunner

    return HostRunner(artifact)
