"""Tune the benchmark suite's example models into the database edgec ships for a preset.

    python bench/tune_suite.py [--preset host] [--time-budget 35m] [--trials 3000] [--jobs 1]

All kernels of mobilenet_v2, resnet18 and transformer (at the shapes bench/suite.py runs) are tuned
together with the tuner behind ``edgec tune`` (``--priority cost``): a kernel the models share is
tuned once, and each chunk goes to the kernel with the most time left to save, so a time budget
goes where it saves the most. The database (``schedules/databases/<preset>`` by default) resumes
like any other. Then it is pruned for shipping: the fastest record of each kernel, and only
kernels whose record beat the default schedule by ``--margin`` when both are timed here the same
way, one after the other; kernels no longer in the models (an older lowering) go too. Last, each
model is compiled with the database and the number of kernels it scheduled is printed, which
checks that the records match a fresh lowering.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

import click

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "examples"))


def _lowered(preset, tmp: str) -> dict:
    import models as examples

    from edgec.pipeline import CompileOptions, CompileReport, _Phases, lower_model
    from edgec.signature import parse_input_option

    mods = {}
    for name, (_, input_name, shape, dtype) in examples.EXAMPLES.items():
        path = examples.export_onnx(name, os.path.join(tmp, f"{name}.onnx"))
        spec = parse_input_option(f"{input_name}:{'x'.join(map(str, shape))}:{dtype}")
        _, mods[name] = lower_model(path, preset, {input_name: spec}, CompileOptions(),
                                    _Phases(CompileReport(), None))
    return mods


def _progress(report, task, elapsed, trials):
    best = f"{task.after_ms:.4f} ms" if task.after_ms is not None else "-"
    before = f"{task.before_ms:.4f} ms" if task.before_ms is not None else "-"
    print(f"[{elapsed:5.0f} s] {trials:5d} trials  {task.name[:44]:<44} default {before}  best {best}",
          flush=True)


def _recheck(mods, target, db, key) -> dict:
    """Each kernel's default and best tuned latency, timed the same way, one after the other.

    The tuner's own figures come from two different harnesses (and its defaults are timed while
    the build workers start), so the decision to ship a record is made on these instead.
    """
    from tvm.s_tir import meta_schedule as ms

    from edgec.schedules.tuner import _merged_tasks, measure_default, measure_tuned

    memdb = ms.database.MemoryDatabase()
    db.load_into(memdb, key)
    checked = {}
    print(f"{'kernel':<44}{'weight':>7}{'default ms':>12}{'tuned ms':>10}")
    for task, wl, weight in _merged_tasks(mods, target)[0]:
        mod = task.dispatched[0]
        tuned = measure_tuned(mod, target, memdb) if memdb.has_workload(mod) else None
        default = measure_default(mod, target) if tuned is not None else None
        checked[wl] = (task.task_name, weight, default, tuned)
        if tuned is not None:
            print(f"{task.task_name[:43]:<44}{weight:>7.0f}{default or float('nan'):>12.4f}{tuned:>10.4f}")
    both = [v for v in checked.values() if v[2] is not None and v[3] is not None]
    print(f"kernels with records: {len(both)} of {len(checked)}; weighted default "
          f"{sum(w * d for _, w, d, _ in both):.3f} ms -> best of default and tuned "
          f"{sum(w * min(d, t) for _, w, d, t in both):.3f} ms")
    return checked


def _kernels_from_db(tmp: str, db_path: str) -> dict:
    """Per model: kernels the database scheduled in a fresh compile (the shipped one left out)."""
    import models as examples

    import edgec

    os.environ["EDGEC_NO_SHIPPED_DB"] = "1"
    used = {}
    for name, (_, input_name, shape, _) in examples.EXAMPLES.items():
        art = edgec.compile(os.path.join(tmp, f"{name}.onnx"), "host",
                            {input_name: "x".join(map(str, shape))}, tuning_db=db_path)
        notes = [n for n in art.report.notes if "kernels scheduled from tuning records" in n]
        used[name] = int(notes[0].split()[0]) if notes else 0
    return used


@click.command()
@click.option("--preset", default="host", show_default=True)
@click.option("--db", "db_path", default=None, help="[default: schedules/databases/<preset>]")
@click.option("--trials", default=3000, show_default=True, type=int, help="Trials over all kernels.")
@click.option("--max-trials-per-task", default=64, show_default=True, type=int)
@click.option("--time-budget", default="35m", show_default=True)
@click.option("--jobs", default=1, show_default=True, type=int)
@click.option("--margin", default=0.97, show_default=True, type=float,
              help="Ship a kernel's record only if it runs in under this fraction of the default's time.")
@click.option("--no-prune", is_flag=True)
def main(preset, db_path, trials, max_trials_per_task, time_budget, jobs, margin, no_prune):
    import tvm

    from edgec.cli_tune import _duration, _summary
    from edgec.schedules.database import TuningDatabase, target_key
    from edgec.schedules.shipped import DATABASES
    from edgec.schedules.tuner import TuneOptions, tune
    from edgec.targets import resolve

    db_path = db_path or os.path.join(DATABASES, preset)
    resolved = resolve(preset)
    target = tvm.target.Target(resolved.target)
    db = TuningDatabase(db_path, create=True)
    options = TuneOptions(trials=trials, max_trials_per_task=max_trials_per_task,
                          time_budget=_duration(time_budget), jobs=jobs, priority="cost")
    with tempfile.TemporaryDirectory() as tmp:
        mods = _lowered(resolved, tmp)
        start = time.monotonic()
        report = tune(list(mods.values()), target, db, options, _progress)
        print(_summary(report))
        key = target_key(target)
        checked = _recheck(list(mods.values()), target, db, key)
        winners = set(checked)
        if not no_prune:
            winners = {wl for wl, (_, _, default, tuned) in checked.items()
                       if tuned is not None and default is not None and tuned < margin * default}
            print("pruned:", db.prune(key, winners, top=1))
        used = _kernels_from_db(tmp, db_path)
    print("kernels scheduled from the database:", used)
    try:
        commit = subprocess.run(["git", "-C", HERE, "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True).stdout.strip() or None
    except OSError:
        commit = None
    provenance = {
        "command": "python bench/tune_suite.py " + " ".join(sys.argv[1:]),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "edgec_commit": commit, "target": resolved.target, "target_key": key, "machine": platform.processor()
        or platform.machine(), "trials_run": report.trials_run, "seconds": round(time.monotonic() - start),
        "stopped_by": report.stopped_by, "tasks": len(report.tasks), "records": db.count(key),
        "kernels_used": used,
        "kernels": [{"name": n, "weight": w, "default_ms": d, "tuned_ms": t, "shipped": wl in winners}
                    for wl, (n, w, d, t) in checked.items() if t is not None],
    }
    with open(os.path.join(db_path, "provenance.json"), "w", encoding="utf-8") as f:
        json.dump(provenance, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
