"""``edgec tune``: MetaSchedule tuning into a reusable database (schedules/tuner.py does the work)."""

from __future__ import annotations

import json
import sys

import click

from edgec.cli_types import HostPortType, InputSpecType


def _duration(text: str | None) -> float | None:
    """``90``, ``90s``, ``15m`` or ``2h`` in seconds."""
    if text is None:
        return None
    units = {"s": 1, "m": 60, "h": 3600}
    scale = units.get(text[-1:], None)
    number = text[:-1] if scale else text
    try:
        return float(number) * (scale or 1)
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a duration like 90, 90s, 15m or 2h",
                                 param_hint="--time-budget") from None


class _Progress:
    """One status line per chunk on a terminal; nothing when not a terminal or in --json mode."""

    def __init__(self, enabled: bool):
        self.enabled = enabled

    def __call__(self, report, task, elapsed: float, trials_done: int, trials_total: int):
        if not self.enabled:
            return
        done = sum(1 for t in report.tasks if t.after_ms is not None)
        eta = elapsed / trials_done * (trials_total - trials_done) if trials_done else 0
        best = f"{task.after_ms:.3f} ms" if task.after_ms is not None else "—"
        click.echo(f"\r[{elapsed:6.0f}s] tasks tuned {done}/{len(report.tasks)}  trials {trials_done}/{trials_total}"
                   f"  {task.name}: best {best}  ETA {eta:5.0f}s   ", nl=False, err=True)


def _summary(report) -> str:
    lines = [f"{'task':<40} {'weight':>6} {'trials':>6} {'before ms':>10} {'after ms':>10}"]
    for t in report.tasks:
        before = f"{t.before_ms:.4f}" if t.before_ms is not None else "—"
        after = f"{t.after_ms:.4f}" if t.after_ms is not None else "—"
        lines.append(f"{t.name[:40]:<40} {t.weight:>6.0f} {t.trials:>6} {before:>10} {after:>10}")
    speedup = report.estimated_speedup
    lines.append(f"{report.trials_run} trials in {report.seconds:.0f} s ({report.stopped_by}); "
                 + (f"estimated end-to-end kernel speedup {speedup:.2f}x" if speedup else "no estimate"))
    if report.skipped:
        lines.append(f"not tunable here: {', '.join(report.skipped)}")
    return "\n".join(lines)


@click.command()
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("-t", "--target", default="host", show_default=True, help="Preset name or target JSON file.")
@click.option("--trials", type=click.IntRange(0), required=True, help="Trials for this run, over all tasks.")
@click.option("--db", "db_path", type=click.Path(file_okay=False), required=True, help="Database folder.")
@click.option("--input", "inputs", type=InputSpecType(), multiple=True, help="Pin an input: NAME:DIMS[:DTYPE].")
@click.option("--max-trials-per-task", type=click.IntRange(1), default=None,
              help="Cap per task [default: the budget split evenly over all tasks].")
@click.option("--time-budget", default=None, help="Stop cleanly after this long (90s, 15m, 2h).")
@click.option("--jobs", type=click.IntRange(1), default=1, show_default=True, help="Parallel builds.")
@click.option("--priority", type=click.Choice(["round-robin", "cost"]), default="round-robin", show_default=True,
              help="round-robin: every kernel in turn; cost: the kernels with the most time to save first.")
@click.option("--layout", type=click.Choice(["auto", "none"]), default="auto", show_default=True)
@click.option("--arch", default=None, help="CUDA compute capability, e.g. sm_87.")
@click.option("--rpc-tracker", type=HostPortType(), default=None, help="Measure on devices behind this tracker.")
@click.option("--rpc-key", default=None)
@click.option("--rpc-devices", type=click.IntRange(1), default=1, show_default=True,
              help="How many devices to measure on in parallel.")
@click.option("--json", "as_json", is_flag=True)
def tune(model, target, trials, db_path, inputs, max_trials_per_task, time_budget, jobs, priority, layout, arch,
         rpc_tracker, rpc_key, rpc_devices, as_json):
    """Tune MODEL's kernels for TARGET with MetaSchedule into the database DB."""
    import tvm

    from edgec.pipeline import CompileOptions, CompileReport, _Phases, lower_model
    from edgec.schedules.database import TuningDatabase
    from edgec.schedules.tuner import TuneOptions
    from edgec.schedules.tuner import tune as run_tuner
    from edgec.targets import resolve

    if (rpc_tracker is None) != (rpc_key is None):
        raise click.UsageError("--rpc-tracker and --rpc-key go together")
    try:
        options = TuneOptions(trials=trials, max_trials_per_task=max_trials_per_task,
                              time_budget=_duration(time_budget), jobs=jobs, priority=priority,
                              rpc=(*rpc_tracker, rpc_key) if rpc_tracker else None, rpc_devices=rpc_devices)
    except ValueError as err:
        raise click.UsageError(str(err)) from None
    preset = resolve(target, arch=arch)
    db = TuningDatabase(db_path, create=True)
    _, mod = lower_model(model, preset, {s.name: s for s in inputs}, CompileOptions(layout=layout, arch=arch),
                         _Phases(CompileReport(), None))
    progress = _Progress(sys.stderr.isatty() and not as_json)
    report = run_tuner(mod, tvm.target.Target(preset.target), db, options,
                       lambda r, t, el, done: progress(r, t, el, done, trials))
    if progress.enabled:
        click.echo("", err=True)
    if as_json:
        click.echo(json.dumps({"db": db_path, "db_sha256": db.sha256(), **report.to_json()}, indent=2))
    else:
        click.echo(_summary(report))
