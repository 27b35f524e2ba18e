"""Default schedules, used where no tuned record applies.

Each rule follows DLight's contract: it returns None when it does not apply, the first rule
that matches wins, and the scheduled function is marked so later rules leave it alone. GPU
targets always get a schedule (DLight's ``Fallback`` binds threads to anything left), because
an unscheduled kernel cannot run on a GPU at all.
"""

from __future__ import annotations

import logging

import tvm
from tvm.s_tir import dlight as dl

from edgec.schedules.gpu_bind import BindUnbound, binds_threads

logger = logging.getLogger(__name__)


def gpu_rules() -> list:
    return [
        dl.gpu.Matmul(),
        dl.gpu.GEMV(),
        dl.gpu.LowBatchGEMV(),
        dl.gpu.Reduction(),
        dl.gpu.GeneralReduction(),
        dl.gpu.Transpose(),
        dl.gpu.Fallback(),
        BindUnbound(),
    ]


def cpu_rules() -> list:
    from edgec.schedules import cpu

    return [cpu.TiledReduction(), dl.cpu.GEMV(), dl.cpu.Reduction(), cpu.Injective()]


def is_gpu(target: tvm.target.Target) -> bool:
    return "gpu" in list(target.keys)


@tvm.transform.module_pass(opt_level=0, name="EdgecDefaultSchedule")
class ApplyRules:
    """DLight's ApplyDefaultSchedule, except that a rule that raises counts as not applying.

    Stock rules assert on shapes they were not written for (DLight's CPU GEMV on a reduction of
    extent 1); one such kernel must not fail the whole compile when a later rule handles it.
    The input module is never modified.
    """

    def __init__(self, rules: list):
        self.rules = rules

    def transform_module(self, mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        updated = {}
        for gvar, func in mod.functions_items():
            if not isinstance(func, tvm.tirx.PrimFunc) or (func.attrs and "tirx.is_scheduled" in func.attrs):
                continue
            target = func.attrs.get("target") if func.attrs else None
            target = target or tvm.target.Target.current(allow_none=False)
            for rule in self.rules:
                try:
                    sch = rule.apply(func, target, False)
                except Exception as err:  # a stock rule's assertion: try the next rule
                    logger.debug("rule %s failed on %s: %s", type(rule).__name__, gvar.name_hint, err)
                    continue
                if sch is not None:
                    sch = sch[0] if isinstance(sch, list) else sch
                    scheduled = sch.mod["main"]
                    if is_gpu(target) and not _stores_all_bound(scheduled.body):
                        # DLight's Transpose rule schedules the transpose block of a fused
                        # transpose+gather and leaves the gather on the host, where it would
                        # dereference device pointers: such a partial schedule does not count
                        logger.debug("rule %s left global stores unbound in %s", type(rule).__name__,
                                     gvar.name_hint)
                        continue
                    updated[gvar] = scheduled.with_attr("tirx.is_scheduled", True)
                    break
        out = tvm.IRModule(dict(mod.functions_items()), attrs=mod.attrs)
        for gvar, func in updated.items():
            out[gvar] = func
        return out


def _stores_all_bound(stmt, bound: bool = False) -> bool:
    """Whether every store to global memory in ``stmt`` sits inside a thread binding."""
    from tvm.tirx import BufferStore

    if isinstance(stmt, BufferStore):
        return bound or stmt.buffer.scope() != "global"
    bound = bound or binds_threads(stmt)
    for field in ("seq", "body", "then_case", "else_case", "block", "init"):
        child = getattr(stmt, field, None)
        if child is None:
            continue
        for c in (child if field == "seq" else [child]):
            if not _stores_all_bound(c, bound):
                return False
    return True


def default_schedule_pass(target: tvm.target.Target) -> tvm.transform.Pass:
    """Schedule every PrimFunc not already scheduled (by a tuning database, say)."""
    return ApplyRules(gpu_rules() if is_gpu(target) else cpu_rules())
