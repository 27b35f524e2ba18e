"""Schedule a lowered module: tuned records first, then default rules for everything left."""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass, field

import tvm
from tvm import relax

from edgec.schedules.database import TuningDatabase, target_key
from edgec.schedules.default import default_schedule_pass

logger = logging.getLogger(__name__)


@dataclass
class Scheduled:
    mod: tvm.IRModule
    database_sha256: str | None = None
    tuned_kernels: int = 0
    notes: list[str] = field(default_factory=list)


def _load_databases(paths: list[str], target, shipped: list[str]) -> tuple[object | None, list[str], str | None]:
    """A MetaSchedule in-memory database holding every record for ``target`` from ``paths``.

    A database without records for the target is ignored: a user's (made for another target)
    with a warning, a shipped one (tuned on another CPU) with a note in the compile report.
    """
    from tvm.s_tir import meta_schedule as ms

    if not paths and not shipped:
        return None, [], None
    given = {os.path.realpath(p) for p in paths}
    shipped = [p for p in shipped if os.path.realpath(p) not in given]  # named by the user too: once
    key = target_key(target)
    memdb = ms.database.MemoryDatabase()
    notes, digests, loaded = [], [], 0
    for path in paths + shipped:
        db = TuningDatabase(path)
        count = db.load_into(memdb, key)
        if count == 0 and path in shipped:
            # a report note (--json, --verbose), not a stderr line: nobody asked for the shipped
            # database, and every host compile on another CPU would print it before its result
            note = ("the tuning database shipped for this preset was tuned on another CPU; ignored "
                    "(set EDGEC_NO_SHIPPED_DB=1 to skip it, or tune your own with `edgec tune`)")
            logger.info(note)
            notes.append(note)
            continue
        if count == 0 and db.target_keys():
            note = f"tuning database {path} has no records for this target; ignored"
            logger.warning(note)
            notes.append(note)
            continue
        loaded += count
        digests.append(db.sha256())
    # one database: its own hash, as `edgec tune --json` prints it; several: a hash of theirs
    if len(digests) > 1:
        digest = hashlib.sha256("".join(digests).encode()).hexdigest()
    else:
        digest = digests[0] if digests else None
    return (memdb if loaded else None), notes, digest


def apply_schedules(mod: tvm.IRModule, target, database_paths: list[str] | None = None,
                    shipped_paths: list[str] | None = None) -> Scheduled:
    memdb, notes, digest = _load_databases(database_paths or [], target, shipped_paths or [])
    with target:
        if memdb is not None:
            with memdb:
                mod = relax.transform.MetaScheduleApplyDatabase(enable_warning=False)(mod)
        tuned = sum(1 for _, f in mod.functions_items()
                    if isinstance(f, tvm.tirx.PrimFunc) and f.attrs and "tirx.is_scheduled" in f.attrs)
        mod = default_schedule_pass(target)(mod)
    if memdb is not None:
        notes.append(f"{tuned} kernels scheduled from tuning records")
    return Scheduled(mod, digest, tuned, notes)
