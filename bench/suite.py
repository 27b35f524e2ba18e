"""The host benchmark suite: edgec untuned, edgec tuned, onnxruntime and PyTorch eager.

Everything runs in this one process, on the same inputs and the same number of threads; each
figure is the median of N runs after warm-up. Prints a table of latencies and the ratio
edgec/onnxruntime per model (below 1 means edgec is faster), the geometric mean of the ratios,
and writes the same as JSON.

    python bench/suite.py [--threads 2] [--runs 50] [--db DIR] [--json-out FILE] [MODEL.onnx ...]

``--db`` is a tuning database (from ``edgec tune``) for the "tuned" column; without it, the
database shipped for the preset (schedules/databases/<preset>, made by bench/tune_suite.py) is
used when there is one. The "untuned" column uses no database at all (the shipped one included),
and "tuned" only the one named. Extra ONNX files are benchmarked too (edgec and onnxruntime only).
"""

from __future__ import annotations

import json
import math
import os
import sys
import tempfile
import time

import click
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples"))


def _time(fn, runs: int, warmup: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times)) * 1e3


def _edgec_ms(art, feeds, runs, warmup):
    from edgec.runtime import runner_for

    runner = runner_for(art)
    return float(np.median(runner.time(feeds, runs, warmup))) * 1e3


def _compile(path, inputs, db):
    """Compile for host with ``db`` only: the shipped database is left out unless it is ``db``."""
    import edgec

    saved = os.environ.get("EDGEC_NO_SHIPPED_DB")
    os.environ["EDGEC_NO_SHIPPED_DB"] = "1"
    try:
        return edgec.compile(path, "host", inputs, tuning_db=db)
    finally:
        if saved is None:
            del os.environ["EDGEC_NO_SHIPPED_DB"]
        else:
            os.environ["EDGEC_NO_SHIPPED_DB"] = saved


def _tuned_kernels(art) -> int:
    notes = [n for n in art.report.notes if n.endswith("kernels scheduled from tuning records")]
    return int(notes[0].split()[0]) if notes else 0


def _ort_ms(path, feeds, runs, warmup, threads):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    return _time(lambda: sess.run(None, feeds), runs, warmup)


def _torch_ms(module, feeds, runs, warmup, threads):
    import torch

    torch.set_num_threads(threads)
    args = [torch.from_numpy(v) for v in feeds.values()]
    with torch.no_grad():
        return _time(lambda: module(*args), runs, warmup)


@click.command()
@click.argument("extra", nargs=-1, type=click.Path(exists=True, dir_okay=False))
@click.option("--threads", default=2, show_default=True, type=int)
@click.option("--runs", default=50, show_default=True, type=int)
@click.option("--warmup", default=5, show_default=True, type=int)
@click.option("--db", default=None, type=click.Path(file_okay=False), help="Tuning database for 'tuned'.")
@click.option("--json-out", default=None, type=click.Path(dir_okay=False))
def main(extra, threads, runs, warmup, db, json_out):
    from edgec.bench_util import set_threads

    set_threads(threads)  # before TVM's thread pool starts
    import edgec
    import models as examples
    from edgec.schedules.shipped import shipped_database

    db = db or shipped_database("host")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        cases = []
        for name, (_, input_name, shape, _) in examples.EXAMPLES.items():
            path = examples.export_onnx(name, os.path.join(tmp, f"{name}.onnx"))
            cases.append((name, path, {input_name: examples.example_input(name)}, examples.build(name),
                          {input_name: shape}))
        for path in extra:
            import onnx

            from edgec.signature import random_feeds
            art = edgec.compile(path)
            cases.append((os.path.basename(path), path, random_feeds(art.inputs), None, None))
        for name, path, feeds, module, pins in cases:
            inputs = {k: "x".join(map(str, v)) for k, v in pins.items()} if pins else None
            start = time.perf_counter()
            untuned = _compile(path, inputs, None)
            compile_s = time.perf_counter() - start
            row = {"model": name, "compile_s": round(compile_s, 1),
                   "edgec_untuned_ms": _edgec_ms(untuned, feeds, runs, warmup)}
            # both edgec builds before onnxruntime and PyTorch: their thread pools keep spinning on
            # the cores for a while after their last run, which would slow whatever comes next
            if db:
                tuned = _compile(path, inputs, db)
                row["tuned_kernels"] = _tuned_kernels(tuned)
                row["edgec_tuned_ms"] = _edgec_ms(tuned, feeds, runs, warmup)
            row["onnxruntime_ms"] = _ort_ms(path, feeds, runs, warmup, threads)
            if module is not None:
                row["pytorch_ms"] = _torch_ms(module, feeds, runs, warmup, threads)
            row["ratio_untuned"] = row["edgec_untuned_ms"] / row["onnxruntime_ms"]
            if "edgec_tuned_ms" in row:
                row["ratio_tuned"] = row["edgec_tuned_ms"] / row["onnxruntime_ms"]
            rows.append(row)

    def geomean(key):
        values = [r[key] for r in rows if key in r]
        return math.exp(sum(map(math.log, values)) / len(values)) if values else None

    result = {"threads": threads, "runs": runs, "database": db, "models": rows,
              "geomean_untuned": geomean("ratio_untuned"), "geomean_tuned": geomean("ratio_tuned")}
    print(f"{'model':<16}{'compile s':>10}{'untuned ms':>12}{'tuned ms':>10}{'ort ms':>9}{'torch ms':>10}"
          f"{'untuned/ort':>13}{'tuned/ort':>11}")
    for r in rows:
        def fmt(key, spec):
            return format(r[key], spec) if key in r else "—"
        print(f"{r['model']:<16}{r['compile_s']:>10}{fmt('edgec_untuned_ms', '12.2f')}{fmt('edgec_tuned_ms', '10.2f')}"
              f"{r['onnxruntime_ms']:>9.2f}{fmt('pytorch_ms', '10.2f')}{r['ratio_untuned']:>12.2f}x"
              f"{fmt('ratio_tuned', '10.2f')}{'x' if 'ratio_tuned' in r else ''}")
    print(f"geometric mean edgec/onnxruntime: untuned {result['geomean_untuned']:.2f}x"
          + (f", tuned {result['geomean_tuned']:.2f}x" if result["geomean_tuned"] else ""))
    if db:
        print(f"tuned: database {db}; kernels scheduled from its records: "
              + ", ".join(f"{r['model']} {r['tuned_kernels']}" for r in rows if "tuned_kernels" in r))
    else:
        print("tuned: no database given and none shipped for host")
    if json_out:
        from edgec.artifact import write_atomic

        write_atomic(json_out, (json.dumps(result, indent=2) + "\n").encode())


if __name__ == "__main__":
    main()
