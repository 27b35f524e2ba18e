"""Run an artifact on a device reached through a TVM RPC tracker.

The device runs ``edgec rpc-server --tracker HOST:PORT --key KEY`` (see rpc_server.py). A run
asks the tracker for a server with ``key``, uploads the artifact (model library, weights, runtime
and runner travel together, checksummed) and the inputs, calls ``edgec.run_bundle`` there, and
downloads the outputs.
"""

from __future__ import annotations

import io
import json
import socket

import numpy as np

from edgec.errors import ExecutionError
from edgec.signature import check_feeds

SESSION_TIMEOUT_S = 1800
_ARTIFACT, _INPUTS, _OUTPUTS = "model.edgec", "inputs.npz", "outputs.npz"


class RemoteRunner:
    emulated = False

    def __init__(self, artifact, tracker: tuple[str, int], key: str, timeout: float = SESSION_TIMEOUT_S):
        self.artifact = artifact
        self.tracker = tracker
        self.key = key
        self.timeout = timeout

    def _session(self):
        from tvm import rpc

        host, port = self.tracker
        try:
            # TVM's own connect retries for a minute; a tracker that is not there should fail now
            socket.create_connection((host, port), timeout=10).close()
            tracker = rpc.connect_tracker(host, port)
            summary = tracker.summary()
        except Exception as err:  # OSError, RuntimeError and TVM errors alike
            raise ExecutionError(f"cannot reach the RPC tracker at {host}:{port}: {_last_line(err)}") from None
        # a request for a key no server ever offered would wait forever at the tracker
        known = set(summary.get("queue_info", {})) | {
            s["key"].split(":", 1)[-1] for s in summary.get("server_info", [])}
        if self.key not in known:
            raise ExecutionError(
                f"no server with key {self.key!r} is registered at the tracker {host}:{port} "
                f"(keys there: {sorted(known) or 'none'})"
            )
        try:
            return tracker.request(self.key, session_timeout=self.timeout, max_retry=3)
        except Exception as err:
            raise ExecutionError(
                f"the tracker at {host}:{port} gave no server for key {self.key!r}: {_last_line(err)}"
            ) from None

    def _call(self, feeds: dict, repeat: int, warmup: int) -> tuple[dict, str]:
        feeds = check_feeds(self.artifact.inputs, feeds)
        sess = self._session()
        buf = io.BytesIO()
        np.savez(buf, **feeds)
        try:
            sess.upload(bytearray(self.artifact.to_bytes()), _ARTIFACT)
            sess.upload(bytearray(buf.getvalue()), _INPUTS)
            run_bundle = sess.get_function("edgec.run_bundle")
        except Exception as err:
            raise ExecutionError(
                f"the server for key {self.key!r} is not an edgec rpc-server ({_last_line(err)}); "
                "start it with 'edgec rpc-server --tracker HOST:PORT --key KEY'"
            ) from None
        try:
            timing = run_bundle(_ARTIFACT, _INPUTS, _OUTPUTS, repeat, warmup)
            data = bytes(sess.download(_OUTPUTS))
        except Exception as err:
            raise ExecutionError(f"the model failed on the remote device: {_last_line(err)}") from None
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            outputs = {name.name: npz[name.name] for name in self.artifact.outputs}
        return outputs, str(timing)

    def run(self, feeds: dict) -> dict:
        return self._call(feeds, 0, 0)[0]

    def time(self, feeds: dict, runs: int, warmup: int = 3) -> list[float]:
        """Seconds per run, measured by the runner on the device."""
        _, timing = self._call(feeds, runs, warmup)
        return [ms / 1e3 for ms in json.loads(timing)["times_ms"]]


def _last_line(err: BaseException) -> str:
    lines = [ln.strip() for ln in str(err).strip().splitlines() if ln.strip()]
    return lines[-1][:400] if lines else type(err).__name__
