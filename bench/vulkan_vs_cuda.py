"""Vulkan against CUDA on the same NVIDIA GPU: the example models, both backends, one process.

Each model is compiled for ``vulkan`` and ``cuda``, run on the same input, checked against each
other, and timed (median of N runs after warm-up, device synchronized around each run). Prints
per-model latencies and the ratio vulkan/cuda (a good Vulkan backend is within 2x), and the
geometric mean. Without a CUDA toolchain or GPU the CUDA column says why and no ratio is given;
on lavapipe only correctness means anything, never speed.

    python bench/vulkan_vs_cuda.py [--runs 50] [--warmup 5] [--json-out FILE]
"""

from __future__ import annotations

import json
import math
import os
import sys
import tempfile

import click
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import edgec  # noqa: E402
from edgec.errors import EdgecError  # noqa: E402
from examples import models  # noqa: E402


def _measure(path: str, target: str, input_name: str, x, runs: int, warmup: int):
    """(outputs, median ms) on ``target``, or (None, reason) when it cannot run here."""
    try:
        art = edgec.compile(path, target, inputs={input_name: (x.shape, str(x.dtype))})
        out = list(art.run({input_name: x}).values())[0]
        times = art._runner.time({input_name: x}, runs, warmup)
    except EdgecError as err:
        return None, str(err)
    return out, float(np.median(times)) * 1e3


@click.command()
@click.option("--runs", default=50, show_default=True)
@click.option("--warmup", default=5, show_default=True)
@click.option("--json-out", type=click.Path(dir_okay=False), default=None)
def main(runs: int, warmup: int, json_out: str | None) -> None:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, (_, input_name, _, _) in models.EXAMPLES.items():
            path = models.export_onnx(name, os.path.join(tmp, f"{name}.onnx"))
            x = models.example_input(name)
            vk_out, vk_ms = _measure(path, "vulkan", input_name, x, runs, warmup)
            cu_out, cu_ms = _measure(path, "cuda", input_name, x, runs, warmup)
            row = {"model": name, "vulkan_ms": vk_ms, "cuda_ms": cu_ms}
            if vk_out is not None and cu_out is not None:
                row["max_abs_diff"] = float(np.abs(vk_out - cu_out).max())
                row["ratio"] = vk_ms / cu_ms
            rows.append(row)
            fmt = lambda v: f"{v:9.3f} ms" if isinstance(v, float) else f"not run ({v})"  # noqa: E731
            ratio = f"  ratio {row['ratio']:.2f}" if "ratio" in row else ""
            click.echo(f"{name:<13} vulkan {fmt(vk_ms)}  cuda {fmt(cu_ms)}{ratio}")
    ratios = [r["ratio"] for r in rows if "ratio" in r]
    summary = {"rows": rows, "geomean_ratio": math.exp(sum(map(math.log, ratios)) / len(ratios)) if ratios else None}
    if ratios:
        click.echo(f"geometric mean vulkan/cuda: {summary['geomean_ratio']:.2f}")
    if json_out:
        with open(json_out, "w", encoding="utf-8") as f:
            json.dump(summary, f, indent=2)


if __name__ == "__main__":
    main()
