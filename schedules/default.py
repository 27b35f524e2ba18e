"""Default schedules, used where no tuned record applies.

Each rule follows DLight's contract: it returns None when it does not apply, the first rule
that matches wins, and the scheduled function is marked so later rules leave it alone. GPU
targets always get a schedule (DLight's ``Fallback`` binds threads to anything left), because
an unscheduled kernel cannot run on a GPU at all.
"""

from __future__ import annotations

import tvm
from tvm.s_tir import dlight as dl


def gpu_rules() -> list:
    return [
        dl.gpu.Matmul(),
        dl.gpu.GEMV(),
        dl.gpu.LowBatchGEMV(),
        dl.gpu.Reduction(),
        dl.gpu.GeneralReduction(),
        dl.gpu.Transpose(),
        dl.gpu.Fallback(),
    ]


def cpu_rules() -> list:
    from edgec.schedules import cpu

    return [cpu.TiledReduction(), dl.cpu.GEMV(), dl.cpu.Reduction(), cpu.Injective()]


def is_gpu(target: tvm.target.Target) -> bool:
    return "gpu" in list(target.keys)


def default_schedule_pass(target: tvm.target.Target) -> tvm.transform.Pass:
    """Schedule every PrimFunc not already scheduled (by a tuning database, say)."""
    return dl.ApplyDefaultSchedule(*(gpu_rules() if is_gpu(target) else cpu_rules()))
