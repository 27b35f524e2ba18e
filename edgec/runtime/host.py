"""Run an artifact in this process with TVM's Relax VM, on the CPU or a local GPU."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import weakref

import numpy as np

from edgec.artifact import LIBRARY, WEIGHTS
from edgec.errors import ArtifactError, ExecutionError
from edgec.signature import check_feeds


def _device_for(kind: str):
    import tvm

    if kind == "cpu":
        return tvm.cpu(0)
    if kind == "cuda":
        dev = tvm.cuda(0)
        if not dev.exist:
            raise ExecutionError("this artifact runs on an NVIDIA GPU (cuda) and this machine has none")
        return dev
    if kind == "vulkan":
        from edgec.targets.vulkan.device import require_device

        return require_device(0)
    raise ArtifactError(f"this edgec cannot run artifacts for device {kind!r} here")


class HostRunner:
    emulated = False

    def __init__(self, artifact):
        import tvm
        from tvm import relax

        self.artifact = artifact
        self._dir = tempfile.mkdtemp(prefix="edgec-run-")
        weakref.finalize(self, shutil.rmtree, self._dir, True)
        if artifact.device == "vulkan":  # the plugin registers the device before the library loads
            from edgec.runtime.device_bundle import load_vulkan_plugin

            load_vulkan_plugin(artifact, self._dir)
        self.device = _device_for(artifact.device)
        lib_path = os.path.join(self._dir, "model.so")
        with open(lib_path, "wb") as f:
            f.write(artifact.files[LIBRARY])
        try:
            lib = tvm.runtime.load_module(lib_path)
        except Exception as err:
            raise ArtifactError(f"cannot load the model library: {_last_line(err)}") from None
        self.vm = relax.VirtualMachine(lib, self.device)
        weights = artifact.files.get(WEIGHTS)
        params = tvm.runtime.load_param_dict(weights) if weights else {}
        names = [w["name"] for w in artifact.manifest.get("weights", [])]
        try:
            self.weights = [tvm.runtime.tensor(params[n].numpy(), self.device) for n in names]
        except KeyError as err:
            raise ArtifactError(f"the artifact's weights lack {err}") from None

    def _call(self, feeds):
        import tvm

        args = [tvm.runtime.tensor(v, self.device) for v in feeds.values()]
        return self.vm["main"](*args, *self.weights)

    def run(self, feeds: dict) -> dict:
        feeds = check_feeds(self.artifact.inputs, feeds)
        try:
            result = self._call(feeds)
        except Exception as err:
            raise ExecutionError(f"the model failed at run time: {_last_line(err)}") from None
        values = _flatten(result)
        names = [o.name for o in self.artifact.outputs]
        if len(values) != len(names):
            raise ExecutionError(f"the model returned {len(values)} outputs, the manifest lists {len(names)}")
        return dict(zip(names, values))

    def time(self, feeds: dict, runs: int, warmup: int = 3) -> list[float]:
        """Seconds per run, measured around the VM call with the device synchronized."""
        feeds = check_feeds(self.artifact.inputs, feeds)
        for _ in range(warmup):
            self._call(feeds)
        self.device.sync()
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            self._call(feeds)
            self.device.sync()
            times.append(time.perf_counter() - start)
        return times


def _flatten(value) -> list[np.ndarray]:
    import tvm

    if isinstance(value, tvm.runtime.Tensor):
        return [value.numpy()]
    if isinstance(value, (list, tuple)) or hasattr(value, "__len__") and not hasattr(value, "numpy"):
        out = []
        for v in value:
            out.extend(_flatten(v))
        return out
    if hasattr(value, "numpy"):
        return [value.numpy()]
    return [np.asarray(value)]


def _last_line(err: BaseException) -> str:
    lines = [ln.strip() for ln in str(err).strip().splitlines() if ln.strip()]
    return lines[-1][:400] if lines else type(err).__name__
