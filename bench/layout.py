"""Layout planning benchmark: ``--layout auto`` against ``--layout none`` on the example models.

The models are those of ``examples/layout_models.py`` (cnn, transformer, nhwc) and of
``examples/models.py`` (mobilenet_v2, resnet18, and its transformer as ``tiny_transformer``).

Both builds of each model run in this one process on the same threads and inputs, alternating
runs so that machine noise hits both alike. Prints, per model, the median latencies, their
ratio (none / auto: above 1 means the planner helps) and the standalone layout transform counts.

    python bench/layout.py [--runs 50] [--threads 2] [--models cnn,transformer,nhwc,...] [--json]
"""

from __future__ import annotations

import json
import os
import sys
import tempfile

import click

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples"))


@click.command()
@click.option("--runs", default=50, show_default=True)
@click.option("--warmup", default=5, show_default=True)
@click.option("--threads", default=None, type=int, help="TVM threads (default: TVM's choice).")
@click.option("--models", default="cnn,transformer,nhwc,mobilenet_v2,resnet18,tiny_transformer", show_default=True)
@click.option("--json", "as_json", is_flag=True)
def main(runs, warmup, threads, models, as_json):
    import edgec
    from edgec.bench_util import set_threads, summarize
    from edgec.runtime import runner_for

    set_threads(threads)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in models.split(","):
            path, feeds = _example(name, tmp)
            shapes = {k: v.shape for k, v in feeds.items()}
            arts = {layout: edgec.compile(path, layout=layout, inputs=shapes) for layout in ("auto", "none")}
            runners = {layout: runner_for(art) for layout, art in arts.items()}
            times = {layout: [] for layout in runners}
            for layout, runner in runners.items():
                runner.time(feeds, warmup, 0)
            for _ in range(runs):  # interleaved: one run of each per round
                for layout, runner in runners.items():
                    times[layout].extend(runner.time(feeds, 1, 0))
            stats = {layout: summarize(t) for layout, t in times.items()}
            rows.append({"model": name, "threads": threads,
                         "auto_ms": stats["auto"]["median_ms"], "none_ms": stats["none"]["median_ms"],
                         "speedup": stats["none"]["median_ms"] / stats["auto"]["median_ms"],
                         "layout_transforms": arts["auto"].report.layout_transforms})
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    click.echo(f"{'model':<17} {'auto ms':>9} {'none ms':>9} {'none/auto':>9}  transforms none→auto")
    for r in rows:
        t = r["layout_transforms"]
        click.echo(f"{r['model']:<17} {r['auto_ms']:>9.3f} {r['none_ms']:>9.3f} {r['speedup']:>9.2f}  "
                   f"{t['before']} → {t['after']}")


def _example(name: str, folder: str):
    """The ONNX file of example ``name`` and an input for it."""
    import layout_models
    import models

    path = os.path.join(folder, f"{name}.onnx")
    if name in layout_models.MODELS:
        return layout_models.export(name, path), {"x": layout_models.example_input(name)}
    example = {"tiny_transformer": "transformer"}.get(name, name)
    models.export_onnx(example, path)
    return path, {models.EXAMPLES[example][1]: models.example_input(example)}


if __name__ == "__main__":
    main()
