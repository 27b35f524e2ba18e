"""Tuning databases on disk: MetaSchedule records, one file per record, keyed by target and workload.

Layout of a database directory::

    edgec-tuning-db.json                      format marker {"format": ..., "version": 1}
    <target key>/target.json                  the TVM target the records were measured on
    <target key>/<workload hash>/workload.json
    <target key>/<workload hash>/<record sha256>.json
    <target key>/<workload hash>/progress.json  trials spent on this task so far

Every file is written atomically (temporary file + rename), so a killed tuner leaves only whole
records, and two tuners on one database never overwrite each other's records. ``progress.json``
is read-modify-written under an exclusive ``flock`` on ``.lock``. A record is keyed by the
workload's structural hash, so any model that contains the same kernel for the same target reuses it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil

from edgec.artifact import write_atomic
from edgec.errors import DatabaseError

logger = logging.getLogger(__name__)

FORMAT = "edgec-tuning-db"
VERSION = 1
MARKER = "edgec-tuning-db.json"
# Target fields that change the generated code; others (tags, host core counts) do not.
_KEY_FIELDS = ("kind", "mtriple", "mcpu", "mattr", "arch", "keys")


def target_key(target) -> str:
    """A short stable key for the target the records apply to."""
    exported = target.export() if hasattr(target, "export") else dict(target)
    subset = {k: _plain(exported[k]) for k in _KEY_FIELDS if k in exported}
    return hashlib.sha256(json.dumps(subset, sort_keys=True).encode()).hexdigest()[:16]


def _plain(value):
    if hasattr(value, "items"):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)) or (hasattr(value, "__iter__") and not isinstance(value, str)):
        return [_plain(v) for v in value]
    return value if isinstance(value, (int, float, bool)) or value is None else str(value)


def workload_hash(mod) -> str:
    from tvm.s_tir import meta_schedule as ms

    return str(ms.database.Workload(mod).as_json()[0])


def _read_json(path: str):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise DatabaseError(f"tuning database file {path} is corrupted ({err}); remove it or restore it") from None


def _write_json(path: str, data) -> None:
    try:
        write_atomic(path, (json.dumps(data, sort_keys=True) + "\n").encode())
    except Exception as err:
        raise DatabaseError(f"cannot write tuning database file {path}: {err}") from None


class TuningDatabase:
    def __init__(self, path: str, *, create: bool = False):
        self.path = path
        marker = os.path.join(path, MARKER)
        if not os.path.isdir(path):
            if not create:
                raise DatabaseError(f"tuning database {path} does not exist")
            os.makedirs(path, exist_ok=True)
        info = _read_json(marker)
        if info is None:
            if os.listdir(path) and not create:
                raise DatabaseError(f"{path} is not an edgec tuning database (no {MARKER})")
            if os.listdir(path) and any(n != ".lock" for n in os.listdir(path)):
                raise DatabaseError(f"{path} is not empty and not an edgec tuning database; use a new folder")
            _write_json(marker, {"format": FORMAT, "version": VERSION})
        elif info.get("format") != FORMAT:
            raise DatabaseError(f"{path} is not an edgec tuning database ({MARKER} has format {info.get('format')!r})")
        elif info.get("version", 0) > VERSION:
            raise DatabaseError(f"tuning database {path} is version {info['version']}; this edgec reads {VERSION}")

    # -- structure ------------------------------------------------------------------------------

    def target_keys(self) -> list[str]:
        return sorted(n for n in os.listdir(self.path) if os.path.isdir(os.path.join(self.path, n)))

    def _workload_dirs(self, key: str):
        root = os.path.join(self.path, key)
        if not os.path.isdir(root):
            return
        for name in sorted(os.listdir(root)):
            folder = os.path.join(root, name)
            if os.path.isdir(folder):
                yield name, folder

    @contextlib.contextmanager
    def lock(self):
        with open(os.path.join(self.path, ".lock"), "a+") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    # -- reading ------------------------------------------------------------------------------------

    def count(self, key: str) -> int:
        return sum(1 for _, folder in self._workload_dirs(key) for n in os.listdir(folder) if _is_record(n))

    def load_into(self, memdb, key: str) -> int:
        """Commit every record for ``key`` into a MetaSchedule database; returns how many."""
        from tvm.s_tir import meta_schedule as ms

        loaded = 0
        for _, folder in self._workload_dirs(key):
            wl_json = _read_json(os.path.join(folder, "workload.json"))
            if wl_json is None:
                continue
            try:
                workload = memdb.commit_workload(ms.database.Workload.from_json(wl_json).mod)
            except Exception as err:
                raise DatabaseError(f"tuning database file {folder}/workload.json is corrupted ({err})") from None
            for name in sorted(os.listdir(folder)):
                if not _is_record(name):
                    continue
                path = os.path.join(folder, name)
                rec_json = _read_json(path)
                try:
                    memdb.commit_tuning_record(ms.database.TuningRecord.from_json(rec_json, workload))
                except Exception as err:
                    raise DatabaseError(f"tuning database file {path} is corrupted ({err})") from None
                loaded += 1
        return loaded

    def progress(self, key: str, workload: str) -> int:
        data = _read_json(os.path.join(self.path, key, workload, "progress.json"))
        return int(data.get("trials", 0)) if data else 0

    def sha256(self) -> str:
        """A hash of every record's content: equal databases hash equal wherever they live."""
        digest = hashlib.sha256()
        for key in self.target_keys():
            for name, folder in self._workload_dirs(key):
                for rec in sorted(n for n in os.listdir(folder) if _is_record(n)):
                    digest.update(f"{key}/{name}/{rec}\n".encode())
        return digest.hexdigest()

    # -- writing ------------------------------------------------------------------------------------

    def save_records(self, target, records, task_names: dict[str, str]) -> int:
        """Persist MetaSchedule tuning records not yet on disk; returns how many were new."""
        key = target_key(target)
        root = os.path.join(self.path, key)
        if not os.path.exists(os.path.join(root, "target.json")):
            os.makedirs(root, exist_ok=True)
            _write_json(os.path.join(root, "target.json"), _plain(target.export()))
        new = 0
        for record in records:
            wl_json = record.workload.as_json()
            wl = str(wl_json[0])
            folder = os.path.join(root, wl)
            os.makedirs(folder, exist_ok=True)
            if not os.path.exists(os.path.join(folder, "workload.json")):
                _write_json(os.path.join(folder, "workload.json"), wl_json)
            rec_json = record.as_json()
            name = hashlib.sha256(json.dumps(rec_json, sort_keys=True).encode()).hexdigest()[:32] + ".json"
            path = os.path.join(folder, name)
            if not os.path.exists(path):
                _write_json(path, rec_json)
                new += 1
        return new

    def add_progress(self, key: str, workload: str, trials: int, task: str) -> int:
        folder = os.path.join(self.path, key, workload)
        os.makedirs(folder, exist_ok=True)
        with self.lock():
            done = self.progress(key, workload) + trials
            _write_json(os.path.join(folder, "progress.json"), {"trials": done, "task": task})
        return done


    def prune(self, key: str, keep_workloads=None, top: int = 1) -> dict:
        """Keep the ``top`` fastest records of each workload, and only the workloads in
        ``keep_workloads`` when given (a database to ship needs nothing else); returns counts."""
        removed_records = removed_workloads = 0
        with self.lock():
            for name, folder in list(self._workload_dirs(key)):
                if keep_workloads is not None and name not in keep_workloads:
                    shutil.rmtree(folder)
                    removed_workloads += 1
                    continue
                ranked = sorted((_mean_secs(_read_json(os.path.join(folder, n))), n)
                                for n in os.listdir(folder) if _is_record(n))
                for _, n in ranked[top:]:
                    os.remove(os.path.join(folder, n))
                    removed_records += 1
        return {"removed_records": removed_records, "removed_workloads": removed_workloads,
                "records": self.count(key)}


def _mean_secs(record_json) -> float:
    # a record is [trace, run_secs, target, args_info]; a failed measurement has no run_secs
    secs = record_json[1] if isinstance(record_json, list) and len(record_json) > 1 else None
    return sum(map(float, secs)) / len(secs) if secs else float("inf")


def _is_record(name: str) -> bool:
    return name.endswith(".json") and name not in ("workload.json", "progress.json", "target.json")
