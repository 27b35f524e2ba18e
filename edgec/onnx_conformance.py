"""ONNX node-test conformance: run ONNX's own node test cases through edgec (and onnxruntime).

    python -m edgec.onnx_conformance --out docs/onnx-conformance.md

Every case in ``onnx.backend.test.case.node.collect_testcases()`` is compiled and run on its first
data set and compared with ONNX's reference outputs (same dtype, same shape, rtol 1e-3, atol 1e-4).
Cases run in long-lived child processes (:class:`CaseRunner`); a case that crashes its process or
runs past the timeout is recorded as a failure and the process is replaced, so one case cannot end
the run. The same cases also run through onnxruntime so that the two counts can be compared.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import threading
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field

RTOL, ATOL = 1e-3, 1e-4
BACKENDS = ("edgec", "onnxruntime")


@dataclass
class CaseResult:
    name: str
    backend: str
    passed: bool
    reason: str = ""
    seconds: float = 0.0
    bound_constants: list[str] = field(default_factory=list)


# -- inside a worker process ----------------------------------------------------------------------

_CASES = None


def node_cases() -> dict:
    """``{case name: TestCase}`` for every ONNX node test case, in ONNX's order."""
    global _CASES
    if _CASES is None:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from onnx.backend.test.case.node import collect_testcases

            _CASES = {c.name: c for c in collect_testcases()}
    return _CASES


def case_op(name: str) -> str:
    """The op a case tests; expanded (function-body) cases belong to the op they expand."""
    cases = node_cases()
    base = name.split("_expanded")[0]
    case = cases.get(base, cases[name])
    nodes = case.model.graph.node
    return nodes[0].op_type if nodes else "<none>"


def first_case_per_op() -> list[str]:
    """The first non-expanded case of every op type, in ONNX's order."""
    seen, names = set(), []
    for name in node_cases():
        if "_expanded" in name:
            continue
        op = case_op(name)
        if op not in seen:
            seen.add(op)
            names.append(name)
    return names


def _normalize(value):
    import numpy as np
    import onnx

    if isinstance(value, onnx.TensorProto):
        return onnx.numpy_helper.to_array(value)
    if isinstance(value, (list, tuple, type(None))):
        return value  # sequences and optionals stay as they are; backends that cannot take them fail
    return np.asarray(value)


def compare(refs, outs) -> str:
    """'' when ``outs`` match ``refs``, else a one-line reason."""
    import numpy as np

    if len(outs) != len(refs):
        return f"{len(outs)} outputs, expected {len(refs)}"
    for i, (ref, out) in enumerate(zip(refs, outs)):
        if not isinstance(ref, np.ndarray):
            return f"output {i}: reference is a {type(ref).__name__}, not a tensor"
        out = np.asarray(out)
        if out.dtype != ref.dtype:
            return f"output {i}: dtype {out.dtype}, expected {ref.dtype}"
        if out.shape != ref.shape:
            return f"output {i}: shape {out.shape}, expected {ref.shape}"
        if ref.dtype == object or ref.dtype.kind in "SU":
            if not np.array_equal(out, ref):
                return f"output {i}: values differ"
            continue
        if not np.allclose(out, ref, rtol=RTOL, atol=ATOL, equal_nan=True):
            diff = np.abs(out.astype(np.float64) - ref.astype(np.float64))
            return f"output {i}: values differ (max abs error {np.nanmax(diff):.3g})"
    return ""


def _one_line(err: BaseException) -> str:
    lines = [ln.strip() for ln in str(err).strip().splitlines() if ln.strip()]
    text = lines[-1] if lines else ""
    return f"{type(err).__name__}: {text}"[:240]


def run_case(name: str, backend: str) -> CaseResult:
    case = node_cases()[name]
    inputs, refs = case.data_sets[0]
    inputs = [_normalize(x) for x in inputs]
    refs = [_normalize(x) for x in refs]
    start = time.perf_counter()
    bound = []
    try:
        if any(not hasattr(x, "dtype") for x in inputs):
            raise TypeError("sequence or optional inputs are not tensors")
        if backend == "edgec":
            from edgec.onnx_backend import EdgecBackend

            rep = EdgecBackend.prepare(case.model, "CPU")
            bound = list(rep.bound_constants)
            outs = rep.run(inputs)
        else:
            outs = _run_onnxruntime(case.model, inputs)
        reason = compare(refs, outs)
    except Exception as err:  # every failure is data for the report
        reason = _one_line(err)
    return CaseResult(name, backend, not reason, reason, time.perf_counter() - start, bound)


def _run_onnxruntime(model, inputs):
    import onnx
    import onnxruntime as ort

    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    copy.ir_version = min(copy.ir_version, 10)  # onnxruntime 1.31 refuses newer IR versions
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.log_severity_level = 4
    sess = ort.InferenceSession(copy.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    return sess.run(None, dict(zip(names, inputs)))


def _worker_main(conn) -> None:
    import logging
    import warnings

    warnings.simplefilter("ignore")
    logging.disable(logging.CRITICAL)
    # TVM's importer prints to stdout; keep the terminal for the parent's progress lines
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    node_cases()
    conn.send("ready")
    while True:
        try:
            task = conn.recv()
        except EOFError:
            return
        if task is None:
            return
        conn.send(asdict(run_case(*task)))


# -- in the driving process ------------------------------------------------------------------------


class CaseRunner:
    """One child process that runs cases; replaced when a case crashes it or times out."""

    def __init__(self, timeout: float = 120.0):
        self.timeout = timeout
        self._proc = None
        self._conn = None

    def _start(self):
        ctx = multiprocessing.get_context("spawn")
        parent, child = ctx.Pipe()
        self._proc = ctx.Process(target=_worker_main, args=(child,), daemon=True)
        self._proc.start()
        child.close()
        self._conn = parent
        if not parent.poll(300) or parent.recv() != "ready":
            self.close()
            raise RuntimeError("the conformance worker process did not start")

    def run(self, name: str, backend: str = "edgec") -> CaseResult:
        if self._proc is None or not self._proc.is_alive():
            self._start()
        start = time.perf_counter()
        self._conn.send((name, backend))
        try:
            if self._conn.poll(self.timeout):
                return CaseResult(**self._conn.recv())
            reason = f"timed out after {self.timeout:.0f} s"
        except (EOFError, ConnectionResetError):
            self._proc.join(5)
            reason = f"crashed the process (exit code {self._proc.exitcode})"
        self.close()
        return CaseResult(name, backend, False, reason, time.perf_counter() - start)

    def close(self):
        if self._proc is not None:
            if self._proc.is_alive():
                self._proc.kill()
            self._proc.join(5)
        self._proc = self._conn = None


def run_all(names, backends, jobs: int, timeout: float, progress=None) -> list[CaseResult]:
    tasks = [(n, b) for b in backends for n in names]
    results: list[CaseResult] = []
    lock = threading.Lock()
    queue = list(reversed(tasks))

    def drive():
        runner = CaseRunner(timeout)
        try:
            while True:
                with lock:
                    if not queue:
                        return
                    task = queue.pop()
                result = runner.run(*task)
                with lock:
                    results.append(result)
                    if progress:
                        progress(len(results), len(tasks), result)
        finally:
            runner.close()

    threads = [threading.Thread(target=drive) for _ in range(max(1, jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    order = {t: i for i, t in enumerate(tasks)}
    return sorted(results, key=lambda r: order[(r.name, r.backend)])


def render(results: list[CaseResult], elapsed: float) -> str:
    """The markdown report: counts for both backends, then edgec's failures grouped by op."""
    import onnx
    import onnxruntime

    by_backend = defaultdict(list)
    for r in results:
        by_backend[r.backend].append(r)
    edgec = by_backend["edgec"]
    lines = [
        "# ONNX node-test conformance",
        "",
        f"Generated by `python -m edgec.onnx_conformance --out docs/onnx-conformance.md` "
        f"(onnx {onnx.__version__}, onnxruntime {onnxruntime.__version__}; {elapsed / 60:.0f} min).",
        "",
        "Every case of `onnx.backend.test.case.node.collect_testcases()` runs on its first data set and is",
        f"compared with ONNX's reference outputs: same dtype and shape, rtol {RTOL:g}, atol {ATOL:g}. edgec runs",
        "each case through `edgec.onnx_backend` (compile with `edgec.compile(model, \"host\")`, run the",
        "artifact); onnxruntime runs the same models on its CPU provider.",
        "",
        "| backend | passed | failed | total |",
        "|---|---:|---:|---:|",
    ]
    for b in BACKENDS:
        rs = by_backend.get(b, [])
        if rs:
            ok = sum(r.passed for r in rs)
            lines.append(f"| {b} | {ok} | {len(rs) - ok} | {len(rs)} |")
    lines += ["", "For reference, stock TVM 0.27's Relax ONNX importer passes 754 of these cases.", ""]

    bound = [r for r in edgec if r.bound_constants]
    lines += [
        "## Cases that rely on build-time constants",
        "",
        "These models take a shape tensor (Reshape's `shape`, Resize's `sizes`, TopK's `K`, Slice's",
        "`starts`, a Reduce's `axes`, ...; `edgec.onnx_backend.SHAPE_INPUTS` lists every slot) as a graph",
        "input. The backend compiles them on the first `run`, binding those inputs with",
        "`edgec.compile(..., constants={...})`; the other inputs stay runtime inputs.",
        f"{sum(r.passed for r in bound)} of the {len(bound)} such cases pass:",
        "",
    ]
    for r in bound:
        lines.append(f"- `{r.name}` ({', '.join(r.bound_constants)}): {'pass' if r.passed else 'fail'}")

    failures = defaultdict(list)
    for r in edgec:
        if not r.passed:
            failures[case_op(r.name)].append(r)
    lines += ["", "## edgec failures by op", ""]
    for op in sorted(failures, key=lambda o: (-len(failures[o]), o)):
        lines.append(f"### {op} ({len(failures[op])})")
        lines.append("")
        for r in failures[op]:
            lines.append(f"- `{r.name}`: {r.reason.replace('|', '/')}")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def write_expected_failures(results: list[CaseResult], path: str) -> None:
    """The failing first-case-per-op cases, one ``name  op: reason`` per line."""
    by_name = {r.name: r for r in results if r.backend == "edgec"}
    lines = [
        "# ONNX node test cases of tests/test_onnx_node_cases.py (the first case of each op) that edgec",
        "# fails, as measured by `python -m edgec.onnx_conformance --write-expected-failures PATH`.",
        "# One `case  reason` per line; the test marks them strict xfails.",
    ]
    for name in first_case_per_op():
        r = by_name.get(name)
        if r is not None and not r.passed:
            lines.append(f"{name}  {case_op(name)}: {' '.join(r.reason.split())[:160]}")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edgec.onnx_conformance", description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="docs/onnx-conformance.md", help="markdown report to write")
    parser.add_argument("--json", help="also write every result as JSON here")
    parser.add_argument("--jobs", type=int, default=max(1, (os.cpu_count() or 2) // 2))
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per case")
    parser.add_argument("--only", help="run only cases whose name contains this")
    parser.add_argument("--no-onnxruntime", action="store_true", help="skip the onnxruntime comparison")
    parser.add_argument("--write-expected-failures", metavar="PATH",
                        help="write the CI subset's failing cases (tests/onnx_expected_failures.txt)")
    args = parser.parse_args(argv)

    names = [n for n in node_cases() if not args.only or args.only in n]
    backends = ("edgec",) if args.no_onnxruntime else BACKENDS

    def progress(done, total, r):
        mark = "ok  " if r.passed else "FAIL"
        print(f"[{done}/{total}] {mark} {r.backend:11s} {r.name} {r.reason[:100]}", flush=True)

    start = time.perf_counter()
    results = run_all(names, backends, args.jobs, args.timeout, progress)
    elapsed = time.perf_counter() - start
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        f.write(render(results, elapsed))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump([asdict(r) for r in results], f, indent=1)
    if args.write_expected_failures:
        write_expected_failures(results, args.write_expected_failures)
    for b in backends:
        rs = [r for r in results if r.backend == b]
        print(f"{b}: {sum(r.passed for r in rs)} / {len(rs)} passed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
