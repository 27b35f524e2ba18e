"""``edgec build``: every (model, target) cell of a config, built, cached, verified and summarized.

Each cell has a key: the sha256 of everything that changes its artifact (model bytes, calibration
and tuning-database contents, options, the resolved target JSON, edgec and TVM versions). The
cache holds artifacts by key, so a cell whose key is unchanged is copied, not rebuilt. Cells build
in worker processes; one failing cell (even one that crashes its process) fails only itself.
The outcome goes to ``DIR/build.json``, written atomically, with no timestamps or absolute paths.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field

from edgec import __version__
from edgec.artifact import Artifact, write_atomic
from edgec.build_config import BuildConfig, ModelEntry, TargetEntry
from edgec.errors import EdgecError

logger = logging.getLogger(__name__)

BUILD_JSON = "build.json"
ARTIFACT_NAME = "model.edgec"
DEFAULT_OUT = os.path.join("build", "edgec")
DEFAULT_CACHE = ".edgec-cache"


class BuildFailedError(EdgecError):
    """At least one cell failed to build or verify (exit code 1); the message names them."""


def default_jobs() -> int:
    return max(1, min(2, os.cpu_count() or 1))


# -- pure helpers -----------------------------------------------------------------------------


def _file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _tree_sha256(folder: str) -> str:
    """Hash a folder's files by relative path and content, so renaming the folder keeps the hash."""
    digest = hashlib.sha256()
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            full = os.path.join(root, name)
            digest.update(os.path.relpath(full, folder).replace(os.sep, "/").encode() + b"\0")
            digest.update(_file_sha256(full).encode())
    return digest.hexdigest()


def _last_line(err: BaseException) -> str:
    lines = [ln.strip() for ln in str(err).strip().splitlines() if ln.strip()]
    return f"{type(err).__name__}: {lines[-1][:300]}" if lines else type(err).__name__


def _reference_version() -> str:
    import onnxruntime

    return f"onnxruntime {onnxruntime.__version__}"


# -- the matrix -------------------------------------------------------------------------------


@dataclass
class Cell:
    model: ModelEntry
    target: TargetEntry
    key: str = ""
    options: dict = field(default_factory=dict)
    verify: bool = False
    # the outcome
    status: str = "pending"
    reason: str = ""
    sha256: str = ""
    size: int = 0
    seconds: float = 0.0
    verification: dict | None = None

    @property
    def name(self) -> str:
        return f"{self.model.name}/{self.target.label}"

    @property
    def relpath(self) -> str:
        return f"{self.model.name}/{self.target.label}/{ARTIFACT_NAME}"

    def to_json(self) -> dict:
        data = {
            "model": self.model.name, "target": self.target.label, "status": self.status,
            "artifact": self.relpath if self.status != "failed" else None,
            "sha256": self.sha256 or None, "size": self.size or None, "key": self.key,
            "options": self.options, "seconds": round(self.seconds, 2),
            "verification": self.verification,
        }
        if self.reason:
            data["reason"] = self.reason
        return data


def plan(config: BuildConfig, only: tuple[str, ...] = ()) -> list[Cell]:
    """The cells to build, in config order, with their keys; ``only`` picks MODEL or MODEL/TARGET."""
    import tvm

    from edgec.targets import resolve

    cells = [Cell(m, t) for m in config.models for t in m.targets]
    if only:
        known = {c.model.name for c in cells} | {c.name for c in cells}
        unknown = [o for o in only if o not in known]
        if unknown:
            from edgec.build_config import ConfigError

            raise ConfigError(f"--only {', '.join(unknown)}: not in {os.path.basename(config.path)}; "
                              f"it builds {', '.join(sorted(known))}")
        cells = [c for c in cells if c.model.name in only or c.name in only]
    hashes: dict[str, str] = {}

    def content(path, folder=False):
        if path and path not in hashes:
            hashes[path] = _tree_sha256(path) if folder else _file_sha256(path)
        return hashes.get(path)

    for cell in cells:
        m = cell.model
        preset = resolve(cell.target.spec)
        cell.options = dict(m.written, inputs=list(m.inputs))
        cell.verify = m.verify if m.verify is not None else config.verify
        keyed = {
            "model": content(m.path),
            "calibration": content(m.calibration),
            "tuning_db": content(m.tuning_db, folder=True),
            "options": {"inputs": list(m.inputs), "quantize": m.quantize, "layout": m.layout, **m.int4},
            "target": {"name": preset.name, "target": preset.target, "toolchain": preset.toolchain,
                       "options": preset.options},
            "edgec": __version__,
            "tvm": tvm.__version__,
        }
        cell.key = hashlib.sha256(json.dumps(keyed, sort_keys=True, default=str).encode()).hexdigest()
    return cells


# -- the cache --------------------------------------------------------------------------------


class Cache:
    """Artifacts by cell key: ``KEY.edgec`` plus ``KEY.json`` (sha256, verification) written last."""

    def __init__(self, folder: str):
        self.folder = folder

    def _paths(self, key: str) -> tuple[str, str]:
        base = os.path.join(self.folder, key[:2], key)
        return base + ".edgec", base + ".json"

    def get(self, key: str) -> tuple[bytes, dict] | None:
        """The cached artifact and its record, or None when absent or damaged."""
        art_path, meta_path = self._paths(key)
        try:
            with open(meta_path, encoding="utf-8") as f:
                meta = json.load(f)
            with open(art_path, "rb") as f:
                data = f.read()
        except (OSError, ValueError):
            return None
        if not isinstance(meta, dict) or hashlib.sha256(data).hexdigest() != meta.get("sha256"):
            logger.warning("cache entry %s is damaged; rebuilding it", key[:12])
            return None
        return data, meta

    def put(self, key: str, data: bytes, verification: dict | None) -> None:
        art_path, meta_path = self._paths(key)
        write_atomic(art_path, data)
        meta = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data), "verification": verification}
        write_atomic(meta_path, (json.dumps(meta, indent=2, sort_keys=True) + "\n").encode())


# -- one cell, in a worker process -----------------------------------------------------------


def _build_cell(task: dict) -> dict:
    """Compile (unless ``task['cached']`` holds the bytes) and verify one cell; never raises."""
    start = time.perf_counter()
    result = {"ok": False, "reason": "", "verification": None}
    try:
        data, art = task.get("cached"), None
        if data is None:
            art = _compile(task)
            data = art.to_bytes()
        result["sha256"], result["size"] = hashlib.sha256(data).hexdigest(), len(data)
        if task["verify"]:
            # the fresh artifact in memory: an int4 one still knows its dequantized weights (verify.py)
            result["verification"] = _verify(art or Artifact.from_bytes(data, task["name"]), task["model"])
            if result["verification"].get("mismatch"):
                result["reason"] = "verification: " + result["verification"]["mismatch"]
                return result
        Cache(task["cache"]).put(task["key"], data, result["verification"])
        result["ok"] = True
    except EdgecError as err:
        result["reason"] = str(err)
    except Exception as err:  # a bug in edgec or TVM still fails only this cell
        result["reason"] = "internal error " + _last_line(err)
    finally:
        result["seconds"] = time.perf_counter() - start
    return result


def _compile(task: dict) -> Artifact:
    import edgec
    from edgec.signature import parse_input_option

    kwargs = {"quantize": task["quantize"], "layout": task["layout"], "tuning_db": task["tuning_db"],
              "calibration": task["calibration"], **task["int4"]}
    inputs = {spec.name: spec for spec in map(parse_input_option, task["inputs"])}
    return edgec.compile(task["model"], task["target"], inputs, **kwargs)


def _verify(artifact: Artifact, model: str) -> dict:
    """Run the artifact where it can run here; a run that cannot happen is ``executed: false``."""
    from edgec.errors import ArtifactError, ToolchainError, VerificationError
    from edgec.verify import verify_artifact

    record = {"reference": _reference_version()}
    try:
        return {**verify_artifact(artifact, model).to_json(), **record}
    except VerificationError as err:
        return {"executed": True, "ok": False, "how": "", "note": str(err), "mismatch": str(err), **record}
    except ImportError as err:
        note = f"cannot run {artifact.arch} artifacts here: {_last_line(err)}"
    except (ToolchainError, ArtifactError) as err:  # no qemu, or no runner for this artifact here
        note = f"cannot run {artifact.arch} artifacts here: {err}"
    return {"executed": False, "ok": False, "how": "not executed", "note": note, "outputs": [], **record}


# -- the whole build --------------------------------------------------------------------------


def _task(cell: Cell, cache: Cache, cached: bytes | None) -> dict:
    m = cell.model
    return {
        "name": cell.name, "key": cell.key, "cache": cache.folder, "cached": cached, "verify": cell.verify,
        "model": m.path, "target": cell.target.spec, "inputs": list(m.inputs), "quantize": m.quantize,
        "layout": m.layout, "calibration": m.calibration, "tuning_db": m.tuning_db, "int4": m.int4,
    }


def _run_tasks(tasks: list[dict], jobs: int) -> list[dict]:
    if jobs <= 1 or len(tasks) <= 1:
        return [_build_cell(t) for t in tasks]
    results: list[dict | None] = [None] * len(tasks)
    # spawn: workers must not inherit TVM's threads from a forked parent
    context = multiprocessing.get_context("spawn")
    try:
        with ProcessPoolExecutor(max_workers=min(jobs, len(tasks)), mp_context=context) as pool:
            futures = [pool.submit(_build_cell, t) for t in tasks]
            for i, future in enumerate(futures):
                try:
                    results[i] = future.result()
                except BrokenProcessPool:
                    pass
    except BrokenProcessPool:
        pass
    for i, task in enumerate(tasks):
        if results[i] is None:  # the pool broke: rerun alone, so only the crashing cell fails
            results[i] = _run_alone(task, context)
    return results


def _run_alone(task: dict, context) -> dict:
    try:
        with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
            return pool.submit(_build_cell, task).result()
    except BrokenProcessPool:
        return {"ok": False, "reason": "the build process crashed (killed by a signal)", "verification": None,
                "seconds": 0.0}


def build(config: BuildConfig, out_dir: str, cache_dir: str, *, only: tuple[str, ...] = (),
          jobs: int | None = None) -> "BuildSummary":
    """Build every cell of ``config`` into ``out_dir``; returns the summary, also in build.json."""
    cells = plan(config, only)
    cache = Cache(cache_dir)
    pending: list[tuple[Cell, dict]] = []
    reference = _reference_version()
    for cell in cells:
        hit = cache.get(cell.key)
        if hit is None:
            pending.append((cell, _task(cell, cache, None)))
            continue
        data, meta = hit
        verification = meta.get("verification")
        reusable = verification and verification.get("executed") and verification.get("reference") == reference
        if cell.verify and not reusable:
            pending.append((cell, _task(cell, cache, data)))  # only the verification runs
            cell.status = "cached"
            continue
        cell.status, cell.sha256, cell.size = "cached", meta["sha256"], meta["size"]
        cell.verification = verification if cell.verify else None
        _publish(out_dir, cell, data)
    if pending:
        logger.info("building %d of %d cells with %d job(s)", len(pending), len(cells), jobs or default_jobs())
    results = _run_tasks([t for _, t in pending], jobs or default_jobs())
    for (cell, _), result in zip(pending, results):
        cell.seconds = result["seconds"]
        cell.verification = result["verification"]
        if result["ok"]:
            cell.status = "cached" if cell.status == "cached" else "built"
            cell.sha256, cell.size = result["sha256"], result["size"]
            hit = cache.get(cell.key)
            if hit is None:
                cell.status, cell.reason = "failed", "the artifact did not reach the cache"
            else:
                _publish(out_dir, cell, hit[0])
        else:
            cell.status, cell.reason = "failed", result["reason"] or "unknown failure"
            if cell.verification:
                cell.verification.pop("mismatch", None)
            _unpublish(out_dir, cell)
        logger.info("%-7s %s %s", cell.status, cell.name, cell.reason)
    summary = BuildSummary(config, cells)
    write_atomic(os.path.join(out_dir, BUILD_JSON), (json.dumps(summary.to_json(), indent=2) + "\n").encode())
    return summary


def _publish(out_dir: str, cell: Cell, data: bytes) -> None:
    write_atomic(os.path.join(out_dir, cell.relpath), data)


def _unpublish(out_dir: str, cell: Cell) -> None:
    # a failed cell must not leave last build's artifact looking current
    try:
        os.unlink(os.path.join(out_dir, cell.relpath))
    except OSError:
        pass


@dataclass
class BuildSummary:
    config: BuildConfig
    cells: list[Cell]

    @property
    def failed(self) -> list[Cell]:
        return [c for c in self.cells if c.status == "failed"]

    def counts(self) -> dict:
        return {s: sum(c.status == s for c in self.cells) for s in ("built", "cached", "failed")}

    def to_json(self) -> dict:
        import tvm

        return {
            "format": "edgec-build", "format_version": 1,
            "config": os.path.basename(self.config.path),
            "edgec_version": __version__, "tvm_version": tvm.__version__,
            "summary": {"cells": len(self.cells), **self.counts()},
            "cells": [c.to_json() for c in self.cells],
        }

    def text(self) -> str:
        width = max((len(c.name) for c in self.cells), default=0)
        lines = []
        for c in self.cells:
            line = f"{c.status:<7} {c.name:<{width}}"
            if c.status != "failed":
                line += f"  {c.size / 1024:8.1f} KiB  {c.seconds:6.1f} s  {_verification_text(c.verification)}"
            else:
                line += f"  {c.reason}"
            lines.append(line.rstrip())
        n = self.counts()
        lines.append(f"{len(self.cells)} cells: {n['built']} built, {n['cached']} cached, {n['failed']} failed")
        return "\n".join(lines)

    def failure(self) -> BuildFailedError | None:
        if not self.failed:
            return None
        parts = "; ".join(f"{c.name} ({c.reason})" for c in self.failed)
        return BuildFailedError(f"{len(self.failed)} of {len(self.cells)} cells failed: {parts}")


def _verification_text(v: dict | None) -> str:
    if v is None:
        return ""
    if not v.get("executed"):
        return f"verify: not executed ({v.get('note', '')})"
    return f"verify ({v.get('how')}): " + ("ok" if v.get("ok") else "MISMATCH")
