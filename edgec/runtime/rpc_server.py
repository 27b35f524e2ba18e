"""``edgec rpc-server``: TVM's RPC server plus one global function, ``edgec.run_bundle``.

A stock ``python -m tvm.exec.rpc_server`` can load a model library but knows nothing of edgec
artifacts. This wrapper starts the same server (same tracker protocol, same key matching) with an
init callback that registers ``edgec.run_bundle`` in the serving process before any session:

    edgec.run_bundle(artifact_file, inputs_file, outputs_file, repeat, warmup) -> str

The files are names in the session's work folder (where ``RPCSession.upload`` puts them). The
artifact is loaded (checksums checked), unpacked, and its own ``bin/edgec-run`` runs the model:
directly when this machine's architecture matches the artifact's, under qemu-aarch64 otherwise
(the loopback test setup on x86). Outputs are written to ``outputs_file`` as an .npz keyed by
output name; with ``repeat`` > 0 the JSON timing line of the runner is returned.
"""

from __future__ import annotations

import io
import json
import logging

import numpy as np

logger = logging.getLogger(__name__)

FUNCTION = "edgec.run_bundle"


def run_bundle(artifact_file: str, inputs_file: str, outputs_file: str, repeat: int, warmup: int) -> str:
    import tvm_ffi

    from edgec.artifact import Artifact
    from edgec.runtime import host_arch
    from edgec.runtime.emulated import EmulatedRunner

    workpath = tvm_ffi.get_global_func("tvm.rpc.server.workpath")
    artifact = Artifact.load(workpath(artifact_file))
    with np.load(workpath(inputs_file), allow_pickle=False) as data:
        feeds = {k: data[k] for k in data.files}
    runner = EmulatedRunner(artifact, native=artifact.arch == host_arch())
    outputs = runner.run(feeds)
    buf = io.BytesIO()
    np.savez(buf, **outputs)
    with open(workpath(outputs_file), "wb") as f:
        f.write(buf.getvalue())
    if repeat > 0:
        seconds = runner.time(feeds, int(repeat), int(warmup))
        return json.dumps({"times_ms": [s * 1e3 for s in seconds]})
    return ""


def register() -> None:
    """Server init callback: runs in the server's worker process, whose session processes inherit it."""
    import tvm_ffi

    tvm_ffi.register_global_func(FUNCTION, _reporting(run_bundle), override=True)


def _reporting(fn):
    # an EdgecError crosses RPC as a TVM error; keep its one-line message and class name readable
    def wrapper(*args):
        from edgec.errors import EdgecError

        try:
            return fn(*args)
        except EdgecError as err:
            raise RuntimeError(f"{type(err).__name__}: {err}") from None

    return wrapper


def serve(tracker: tuple[str, int], key: str, host: str = "0.0.0.0", port: int = 9090, port_end: int = 9199):
    """Start the server registered with ``tracker`` under ``key``; blocks until it exits."""
    from tvm import rpc

    server = rpc.Server(host, port, port_end, key=key, tracker_addr=tracker, server_init_callback=register)
    logger.info("edgec rpc server on %s:%d, key %s, tracker %s:%d", host, server.port, key, *tracker)
    server.proc.join()


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracker", required=True, help="HOST:PORT of the RPC tracker")
    parser.add_argument("--key", required=True)
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=9090)
    parser.add_argument("--port-end", type=int, default=9199)
    args = parser.parse_args()
    t_host, _, t_port = args.tracker.rpartition(":")
    serve((t_host, int(t_port)), args.key, args.host, args.port, args.port_end)
