"""MetaSchedule tuning that reaches every task, resumes, and keeps what it found.

The budget is split across all tasks (a task never gets more than its share until every task
has had its share), and is spent round-robin in small chunks, so a time budget or Ctrl-C still
leaves every task improved rather than a few tuned and the rest untouched. With ``priority="cost"``
the chunks go instead to the kernels with the most time left to save (weight × best latency,
discounted by the chunks they already had): under a time budget the cheap kernels may get none,
which is what a short budget over many models wants. After each chunk
the new records and the task's trial count are written to the database, so a resumed run picks
up exactly where the last one stopped.
"""

from __future__ import annotations

import logging
import math
import tempfile
import time
from dataclasses import dataclass, field

import numpy as np
import tvm

from edgec.errors import BadInputError
from edgec.schedules.database import TuningDatabase, target_key, workload_hash
from edgec.schedules.default import default_schedule_pass

logger = logging.getLogger(__name__)

CHUNK_TRIALS = 16


@dataclass(frozen=True)
class TuneOptions:
    trials: int
    max_trials_per_task: int | None = None
    time_budget: float | None = None  # seconds
    jobs: int = 1
    rpc: tuple[str, int, str] | None = None  # tracker host, port, key
    rpc_devices: int = 1
    seed: int = 0
    priority: str = "round-robin"  # or "cost": costly kernels first and more often


    def __post_init__(self):
        if self.trials < 0:
            raise ValueError("--trials must be >= 0")
        if self.max_trials_per_task is not None and self.max_trials_per_task < 1:
            raise ValueError("--max-trials-per-task must be >= 1")
        if self.time_budget is not None and self.time_budget <= 0:
            raise ValueError("--time-budget must be positive")
        if self.jobs < 1:
            raise ValueError("--jobs must be >= 1")
        if self.priority not in ("round-robin", "cost"):
            raise ValueError("--priority must be round-robin or cost")


@dataclass
class TaskReport:
    name: str
    weight: float
    workload: str
    trials: int = 0          # in the database, this run included
    before_ms: float | None = None
    after_ms: float | None = None

    def to_json(self) -> dict:
        return self.__dict__.copy()


@dataclass
class TuneReport:
    tasks: list[TaskReport] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    trials_run: int = 0
    seconds: float = 0.0
    stopped_by: str = "budget"   # budget | time | interrupt | done

    @property
    def estimated_speedup(self) -> float | None:
        timed = [t for t in self.tasks if t.before_ms is not None]
        if not timed:
            return None
        before = sum(t.weight * t.before_ms for t in timed)
        after = sum(t.weight * min(t.before_ms, t.after_ms or t.before_ms) for t in timed)
        return before / after if after > 0 else None

    def to_json(self) -> dict:
        return {"tasks": [t.to_json() for t in self.tasks], "skipped": self.skipped,
                "trials_run": self.trials_run, "seconds": round(self.seconds, 1),
                "stopped_by": self.stopped_by, "estimated_speedup": self.estimated_speedup}


def _static(func) -> bool:
    return all(isinstance(d, tvm.tirx.IntImm) or isinstance(d, int) for p in func.params for d in p.shape)


def extract_tasks(mod: tvm.IRModule, target):
    """MetaSchedule tasks for the unscheduled static-shape kernels; names of the rest."""
    from tvm.s_tir import meta_schedule as ms
    from tvm.s_tir.analysis import estimate_tir_flops

    tasks, skipped = [], []
    for task in ms.relax_integration.extract_tasks(mod, target):
        func = task.dispatched[0]["main"]
        if not _static(func):
            skipped.append(f"{task.task_name} (symbolic shape)")
            continue
        try:
            # MetaSchedule's task scheduler counts each task's flops first, and its counter
            # rejects some expressions (a Let from the vector exp/erf): skip, not crash, on those
            estimate_tir_flops(task.dispatched[0])
        except Exception as err:  # noqa: BLE001 - any TVM error means the same thing here
            skipped.append(f"{task.task_name} (MetaSchedule cannot analyse it: {str(err).splitlines()[-1][:80]})")
            continue
        tasks.append(task)
    return tasks, skipped


def _best_ms(memdb, mod) -> float | None:
    from tvm.s_tir import meta_schedule as ms

    if not memdb.has_workload(mod):
        return None
    top = memdb.get_top_k(memdb.commit_workload(mod), 1)
    if not top or not top[0].run_secs:
        return None
    return float(np.mean([float(s) for s in top[0].run_secs])) * 1e3


def measure_default(mod: tvm.IRModule, target) -> float | None:
    """Latency of a task under the default schedules, measured here (None if not measurable)."""
    try:
        # ApplyDefaultSchedule updates the module it is given: keep the task's module untouched
        with target:
            scheduled = default_schedule_pass(target)(tvm.IRModule(dict(mod.functions_items())))
        return _time_kernel(scheduled, target)
    except Exception as err:  # an unmeasurable kernel still gets tuned
        logger.debug("default schedule of a task could not be timed: %s", err)
        return None


def measure_tuned(mod: tvm.IRModule, target, memdb) -> float | None:
    """Latency of a task under its best record in ``memdb``, timed like ``measure_default``."""
    from tvm.s_tir.transform import RemoveWeightLayoutRewriteBlock

    try:
        sch = memdb.query_schedule(mod, target, workload_name="main")
        if sch is None:
            return None
        return _time_kernel(RemoveWeightLayoutRewriteBlock(skip_tensor_rewrite=True)(sch.mod), target)
    except Exception as err:
        logger.debug("tuned schedule of a task could not be timed: %s", err)
        return None


def _time_kernel(scheduled: tvm.IRModule, target) -> float:
    lib = tvm.tirx.build(scheduled, target)
    func = scheduled["main"]
    args = [tvm.runtime.tensor(np.zeros([int(d) for d in p.shape], dtype=p.dtype)) for p in func.params]
    timer = lib.time_evaluator("main", tvm.cpu(), number=3, repeat=5, min_repeat_ms=20)
    return float(timer(*args).median) * 1e3


def _builder_runner(options: TuneOptions):
    from tvm.s_tir import meta_schedule as ms

    from edgec.schedules.builder import PooledBuilder

    # generous timeouts: a loaded 2-core machine builds a kernel in well over TVM's default 30 s
    builder = PooledBuilder(max_workers=options.jobs, timeout_sec=300)
    if options.rpc:
        host, port, key = options.rpc
        config = ms.runner.RPCConfig(tracker_host=host, tracker_port=port, tracker_key=key,
                                     session_timeout_sec=120)
        runner = ms.runner.RPCRunner(config, max_workers=options.rpc_devices)
    else:
        runner = ms.runner.LocalRunner(timeout_sec=120)
    return builder, runner


def _merged_tasks(mods: list[tvm.IRModule], target):
    """The tasks of all ``mods``, one per workload (a kernel several models share is tuned once)."""
    tasks, weights, skipped = {}, {}, []
    for mod in mods:
        extracted, skip = extract_tasks(mod, target)
        skipped += [s for s in skip if s not in skipped]
        for task in extracted:
            wl = workload_hash(task.dispatched[0])
            tasks.setdefault(wl, task)
            weights[wl] = weights.get(wl, 0.0) + float(task.weight)
    return [(task, wl, weights[wl]) for wl, task in tasks.items()], skipped


def tune(mod, target, db: TuningDatabase, options: TuneOptions, progress=None) -> TuneReport:
    """Tune every task of ``mod`` (or of a list of modules) for ``target`` into ``db``.

    ``progress(report, task, elapsed, trials_run)`` is called after every chunk.
    """
    from tvm.s_tir import meta_schedule as ms

    start = time.monotonic()
    report = TuneReport()
    merged, report.skipped = _merged_tasks(mod if isinstance(mod, (list, tuple)) else [mod], target)
    if not merged:
        report.stopped_by = "done"
        return report
    extracted = [task for task, _, _ in merged]
    key = target_key(target)
    memdb = ms.database.MemoryDatabase()
    db.load_into(memdb, key)

    share = options.max_trials_per_task or max(1, math.ceil(options.trials / len(extracted)))
    reports = [TaskReport(task.task_name, weight, wl, trials=db.progress(key, wl)) for task, wl, weight in merged]
    report.tasks = reports
    builder = runner = None
    budget_left = options.trials
    saved = len(memdb.get_all_tuning_records())  # loaded from disk: already there
    try:
        if budget_left > 0 and any(r.trials < share for r in reports):
            builder, runner = _builder_runner(options)
            builder.start()  # its workers import TVM while the default schedules are timed
        for task, tr in zip(extracted, reports):
            tr.before_ms = measure_default(task.dispatched[0], target) if not options.rpc else None
            tr.after_ms = _best_ms(memdb, task.dispatched[0])
        cost_model = ms.cost_model.XGBModel(num_tuning_cores=options.jobs)
        with tempfile.TemporaryDirectory(prefix="edgec-tune-") as work_dir:
            runs = dict.fromkeys((r.workload for r in reports), 0)  # chunks run per task, this run
            failed = set()
            while budget_left > 0:
                pending = [(t, r) for t, r in zip(extracted, reports)
                           if r.trials < share and r.workload not in failed]
                if not pending:
                    report.stopped_by = "done"
                    break
                if options.time_budget and time.monotonic() - start > options.time_budget:
                    report.stopped_by = "time"
                    return report
                task, tr = min(pending, key=lambda p: _order(p[1], runs[p[1].workload], options.priority))
                runs[tr.workload] += 1
                chunk = min(CHUNK_TRIALS, share - tr.trials, budget_left)
                try:
                    _tune_chunk(task, target, chunk, work_dir, memdb, builder, runner, cost_model, options)
                except Exception as err:  # noqa: BLE001 - one kernel MetaSchedule cannot handle: the rest go on
                    logger.warning("task %s cannot be tuned: %s", tr.name, str(err).splitlines()[-1][:200])
                    report.skipped.append(f"{tr.name} (tuning failed)")
                    failed.add(tr.workload)
                    continue
                # the memory database keeps records in commit order: only the tail is new
                records = list(memdb.get_all_tuning_records())
                db.save_records(target, records[saved:], {})
                saved = len(records)
                tr.trials = db.add_progress(key, tr.workload, chunk, tr.name)
                tr.after_ms = _best_ms(memdb, task.dispatched[0])
                budget_left -= chunk
                report.trials_run += chunk
                if progress:
                    progress(report, tr, time.monotonic() - start, report.trials_run)
    except KeyboardInterrupt:
        report.stopped_by = "interrupt"
        raise
    finally:
        if builder is not None:
            builder.close()
        report.seconds = time.monotonic() - start
    return report


def _order(tr: TaskReport, runs: int, priority: str):
    """Which pending task gets the next chunk: the smallest key."""
    cost = tr.weight * min(tr.before_ms or math.inf, tr.after_ms or math.inf)
    cost = 0.0 if math.isinf(cost) else cost
    if priority == "cost":
        # the most time left to save: a costly kernel gets chunk after chunk, a cheap one waits
        return -cost / (1 + runs)
    # round-robin: every unfinished task once per round, costliest first, so a time budget that
    # ends mid-round has spent its trials where they save the most
    return runs, -cost


def _tune_chunk(task, target, trials, work_dir, memdb, builder, runner, cost_model, options):
    from tvm.s_tir import meta_schedule as ms

    # MetaSchedule's console handler (on stdout) takes this logger's level whenever its loggers
    # are made, and making them leaves the level at DEBUG: set it for every chunk, or the
    # --json output fills with its log from the second chunk on (found by fault injection)
    logging.getLogger("tvm.s_tir.meta_schedule").setLevel(
        logging.DEBUG if logger.isEnabledFor(logging.DEBUG) else logging.WARNING)
    contexts, weights = ms.relax_integration.extracted_tasks_to_tune_contexts(
        [task], work_dir, num_threads=options.jobs, seed=options.seed)
    if not contexts:
        raise BadInputError(f"task {task.task_name} cannot be tuned")
    ms.tune.tune_tasks(
        tasks=contexts, task_weights=weights, work_dir=work_dir,
        max_trials_global=trials, max_trials_per_task=trials, num_trials_per_iter=trials,
        builder=builder, runner=runner, database=memdb, cost_model=cost_model,
        task_scheduler="round-robin",
    )
