"""int4 GEMV (M = 1) on the host: edgec's fused dequant kernel against the fp32 TVM matmul and
onnxruntime's MatMulNBits on the same weights, plus effective GB/s against a streaming copy.

The int4 model is written by onnxruntime's own quantizer (block 32, asymmetric); edgec compiles
it (MatMulNBits importer) and the float model it came from. All runs happen in this process,
interleaved, on the same threads and input.

    python bench/int4_gemv.py [--runs 30] [--threads 2] [--shapes 4096x11008,11008x4096] [--json]
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time

import click
import numpy as np


def _float_model(k: int, n: int):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((k, n)).astype("float32") * 0.02, "W")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "W"], ["y"])], "gemv",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, k])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, n])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10
    return model


def _nbits(model, block: int):
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    logging.getLogger("onnxruntime").setLevel(logging.WARNING)
    q = MatMulNBitsQuantizer(model, block_size=block, is_symmetric=False)
    q.process()
    out = q.model.model
    out.ir_version = 10
    return out


def copy_bandwidth(nbytes: int = 1 << 28, runs: int = 5) -> float:
    """GB/s of a streaming copy (bytes read + bytes written)."""
    src = np.ones(nbytes // 4, np.float32)
    dst = np.empty_like(src)
    best = min(_timed(lambda: np.copyto(dst, src)) for _ in range(runs))
    return 2 * nbytes / best / 1e9


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


@click.command()
@click.option("--runs", default=30, show_default=True)
@click.option("--threads", default=None, type=int, help="Threads for TVM and onnxruntime.")
@click.option("--shapes", default="4096x11008,11008x4096", show_default=True, help="KxN list.")
@click.option("--block", default=32, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def main(runs, threads, shapes, block, as_json):
    import onnx
    import onnxruntime as ort

    import edgec
    from edgec.bench_util import set_threads
    from edgec.runtime import runner_for

    set_threads(threads)
    bandwidth = copy_bandwidth()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for shape in shapes.split(","):
            k, n = (int(v) for v in shape.split("x"))
            fp32 = _float_model(k, n)
            q4 = _nbits(fp32, block)
            q4_path = os.path.join(tmp, "q4.onnx")
            onnx.save(q4, q4_path)
            feeds = {"x": np.random.default_rng(1).standard_normal((1, k)).astype("float32")}
            runners = {"int4": runner_for(edgec.compile(q4_path)), "fp32": runner_for(edgec.compile(fp32))}
            opts = ort.SessionOptions()
            if threads:
                opts.intra_op_num_threads = threads
            sess = ort.InferenceSession(q4_path, opts, providers=["CPUExecutionProvider"])
            timers = {name: (lambda r=r: r.time(feeds, 1, 0)[0]) for name, r in runners.items()}
            timers["ort_int4"] = lambda: _timed(lambda: sess.run(None, feeds))
            times = {name: [] for name in timers}
            for t in timers.values():
                t()
            for _ in range(runs):
                for name, t in timers.items():
                    times[name].append(t())
            ms = {name: float(np.median(v)) * 1e3 for name, v in times.items()}
            int4_bytes = k * n // 2 + 2 * 4 * n * (k // block)  # packed nibbles + fp32 scale and min
            rows.append({
                "K": k, "N": n, "block": block, "threads": threads,
                "edgec_int4_ms": ms["int4"], "edgec_fp32_ms": ms["fp32"], "ort_int4_ms": ms["ort_int4"],
                "speedup_vs_fp32": ms["fp32"] / ms["int4"], "speedup_vs_ort": ms["ort_int4"] / ms["int4"],
                "int4_GBps": int4_bytes / (ms["int4"] / 1e3) / 1e9,
                "fp32_GBps": 4 * k * n / (ms["fp32"] / 1e3) / 1e9,
                "copy_GBps": bandwidth,
            })
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    for r in rows:
        print(f"K={r['K']:5d} N={r['N']:5d}: int4 {r['edgec_int4_ms']:.3f} ms, fp32 {r['edgec_fp32_ms']:.3f} ms "
              f"({r['speedup_vs_fp32']:.2f}x), onnxruntime int4 {r['ort_int4_ms']:.3f} ms "
              f"({r['speedup_vs_ort']:.2f}x); int4 {r['int4_GBps']:.1f} GB/s, fp32 {r['fp32_GBps']:.1f} GB/s, "
              f"copy {r['copy_GBps']:.1f} GB/s")


if __name__ == "__main__":
    main()
