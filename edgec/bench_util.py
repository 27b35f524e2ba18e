"""Latency measurement shared by ``edgec bench`` and ``bench/``: same process, same threads."""

from __future__ import annotations

import os
import time

import numpy as np


def summarize(seconds: list[float]) -> dict:
    ms = np.asarray(seconds) * 1e3
    return {"median_ms": float(np.median(ms)), "p10_ms": float(np.percentile(ms, 10)),
            "p90_ms": float(np.percentile(ms, 90)), "runs": len(ms)}


def set_threads(threads: int | None) -> None:
    """TVM's CPU thread pool reads TVM_NUM_THREADS when it starts: set it before the first run."""
    if threads:
        os.environ["TVM_NUM_THREADS"] = str(threads)


def time_onnxruntime(model_path: str, feeds: dict, runs: int, warmup: int, threads: int | None) -> list[float]:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    try:
        sess = ort.InferenceSession(model_path, opts, providers=["CPUExecutionProvider"])
        sess.run(None, feeds)
    except Exception as err:  # onnxruntime raises its own types for a model or input it refuses
        from edgec.errors import InputError

        raise InputError(f"onnxruntime cannot run {model_path} on these inputs: "
                         f"{str(err).strip().splitlines()[0][:300]}") from None
    for _ in range(warmup):
        sess.run(None, feeds)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        sess.run(None, feeds)
        times.append(time.perf_counter() - start)
    return times


def bench_artifact(path: str, feeds: dict | None, runs: int, warmup: int, threads: int | None,
                   ort_model: str | None, *, emulate: bool = False, rpc: tuple | None = None) -> dict:
    """Time the artifact here, under qemu (``emulate``), or on a device (``rpc=((host, port), key)``)."""
    import edgec
    from edgec.runtime import runner_for
    from edgec.signature import random_feeds

    set_threads(threads)
    art = edgec.load(path)
    feeds = feeds if feeds is not None else random_feeds(art.inputs)
    if rpc:
        from edgec.runtime.remote import RemoteRunner

        runner = RemoteRunner(art, *rpc)
    else:
        runner = runner_for(art, emulate=emulate)
    where = "remote" if rpc else ("qemu" if emulate else "host")
    result = {"artifact": path, "threads": threads, "where": where,
              "edgec": summarize(runner.time(feeds, runs, warmup))}
    if ort_model:
        result["onnxruntime"] = summarize(time_onnxruntime(ort_model, feeds, runs, warmup, threads))
        result["ratio"] = result["edgec"]["median_ms"] / result["onnxruntime"]["median_ms"]
    return result
