"""Fuzz edgec's ONNX path: mutate valid models, compile them for host, run them against onnxruntime.

    python tests/fuzz/harness.py --seconds 600 [--seed N] [--findings DIR]

Each case is a seed model plus a few replayable mutations (tests/fuzz/mutate.py). A persistent
worker process compiles it with ``edgec.compile(..., "host")`` and, when onnxruntime accepts the
same model, runs both on the same random inputs. A *finding* is:

* ``crash``: the worker died by a signal while edgec handled the case;
* ``hang``: no answer within the per-case timeout;
* ``internal``: edgec raised an exception that is not an ``EdgecError``;
* ``mismatch``: edgec compiled a model onnxruntime runs, and the outputs differ.

A finding is minimized (mutations dropped while it still reproduces) and written as JSON to the
findings folder; tests/fuzz/regressions/ keeps those that were fixed, and tests/test_fuzz.py
replays them. The worker is restarted after every crash or hang.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import select
import subprocess
import sys
import tempfile
import time
from collections import Counter

sys.path.insert(0, os.path.dirname(__file__))
import mutate  # noqa: E402

CASE_TIMEOUT_S = 90


class Worker:
    def __init__(self):
        log = open(os.environ.get("EDGEC_FUZZ_WORKER_LOG", os.devnull), "ab")
        self.proc = subprocess.Popen([sys.executable, __file__, "--worker"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=log)
        self.pending = b""

    def _line(self, deadline: float) -> bytes | None:
        """The next line from the worker; b"" when it died, None at the deadline."""
        fd = self.proc.stdout.fileno()
        while b"\n" not in self.pending:
            left = deadline - time.time()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return None
            chunk = os.read(fd, 65536)
            if not chunk:
                return b""
            self.pending += chunk
        line, _, self.pending = self.pending.partition(b"\n")
        return line

    def ask(self, path: str, timeout: float) -> dict:
        self.proc.stdin.write((json.dumps({"model": path}) + "\n").encode())
        self.proc.stdin.flush()
        stage, deadline = "start", time.time() + timeout
        while True:
            line = self._line(deadline)
            if line is None:
                self.close()
                if stage != "edgec":  # onnxruntime (or the worker's start) hung, not edgec
                    return {"ort": f"hung during {stage}", "edgec": "not run"}
                return {"finding": "hang", "detail": f"no answer within {timeout:.0f} s during {stage}"}
            if not line:
                code = self.proc.wait()
                if stage != "edgec":  # onnxruntime crashed, not edgec: not our finding
                    return {"ort": f"crashed ({code}) during {stage}", "edgec": "not run"}
                return {"finding": "crash", "detail": f"worker died ({code}) during {stage}"}
            message = json.loads(line)
            if "stage" in message:
                stage = message["stage"]
            else:
                return message

    def alive(self) -> bool:
        return self.proc.poll() is None

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def run_case(worker_box: list, seed: str, records: list[dict], folder: str, timeout=CASE_TIMEOUT_S) -> dict:
    path = os.path.join(folder, "case.onnx")
    with open(path, "wb") as f:
        f.write(mutate.build(seed, records))
    if not worker_box or not worker_box[0].alive():
        worker_box[:] = [Worker()]
    return worker_box[0].ask(path, timeout)


def minimize(worker_box, seed, records, kind, folder) -> list[dict]:
    """Drop mutation records one at a time while the same kind of finding reproduces."""
    current = list(records)
    changed = True
    while changed and len(current) > 1:
        changed = False
        for i in range(len(current)):
            trial = current[:i] + current[i + 1:]
            if run_case(worker_box, seed, trial, folder).get("finding") == kind:
                current, changed = trial, True
                break
    return current


def fuzz(seconds: float, seed: int, findings_dir: str | None, max_cases: int | None = None) -> dict:
    rng = random.Random(seed)
    models = mutate.seeds()
    names = sorted(models)
    stats: Counter = Counter()
    findings = []
    worker_box: list = []
    start = time.time()
    with tempfile.TemporaryDirectory(prefix="edgec-fuzz-") as folder:
        while time.time() - start < seconds and (max_cases is None or stats["executions"] < max_cases):
            name = names[stats["executions"] % len(names)]
            records = mutate.draw(rng, models[name], rng.randint(1, 3))
            result = run_case(worker_box, name, records, folder)
            stats["executions"] += 1
            stats[f"ort {result.get('ort', '-').split(':')[0]}"] += 1
            stats[f"edgec {result.get('edgec', result.get('finding', '-')).split(':')[0]}"] += 1
            if result.get("ort") == "ok" and result.get("edgec", "").startswith("CompileError"):
                stats["edgec CompileError where onnxruntime runs"] += 1
            if "finding" in result:
                kind = result["finding"]
                small = minimize(worker_box, name, records, kind, folder)
                finding = {"kind": kind, "seed": name, "records": small, "detail": result.get("detail", "")}
                findings.append(finding)
                if findings_dir:
                    os.makedirs(findings_dir, exist_ok=True)
                    with open(os.path.join(findings_dir, f"{kind}-{len(findings):03d}.json"), "w") as f:
                        json.dump(finding, f, indent=1)
        for worker in worker_box:
            worker.close()
    return {"seconds": round(time.time() - start, 1), "seed": seed, "executions": stats["executions"],
            "outcomes": {k: v for k, v in sorted(stats.items()) if k != "executions"}, "findings": findings}


# -- the worker ----------------------------------------------------------------------------------


def _worker() -> None:
    # messages go on a private copy of stdout; whatever TVM prints lands on stderr (discarded)
    channel = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)

    def say(message):
        channel.write(json.dumps(message) + "\n")
        channel.flush()

    for line in sys.stdin:
        path = json.loads(line)["model"]
        say({"stage": "ort"})
        reference, feeds, ort_state = _onnxruntime(path)
        say({"stage": "edgec"})
        state, mismatch = _edgec(path, feeds, reference)
        reply = {"ort": ort_state, "edgec": state}
        if state.startswith("internal"):
            reply.update(finding="internal", detail=state)
        elif mismatch:
            reply.update(finding="mismatch", detail=mismatch)
        say(reply)


def _onnxruntime(path):
    import numpy as np
    import onnxruntime as ort

    try:
        session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        feeds = {}
        rng = np.random.default_rng(0)
        for i in session.get_inputs():
            shape = [d if isinstance(d, int) else 3 for d in i.shape]
            dtype = np.dtype(ort_type(i.type))
            feeds[i.name] = (rng.standard_normal(shape) * 2).astype(dtype) if dtype.kind == "f" else \
                rng.integers(0, 3, shape).astype(dtype)
        names = [o.name for o in session.get_outputs()]
        return dict(zip(names, session.run(None, feeds))), feeds, "ok"
    except Exception as err:  # noqa: BLE001 - onnxruntime refuses the model: no reference
        return None, None, f"refused: {type(err).__name__}"


def ort_type(text: str) -> str:
    table = {"float": "float32", "float16": "float16", "double": "float64", "int32": "int32", "int64": "int64",
             "uint8": "uint8", "bool": "bool", "int8": "int8"}
    return table.get(text[len("tensor("):-1], "float32")


def _edgec(path, feeds, reference):
    import edgec
    from edgec.errors import EdgecError

    try:
        art = edgec.compile(path, "host")
        if reference is None:
            return "ok", None
        outputs = art.run(feeds)
    except EdgecError as err:
        return f"{type(err).__name__}: {str(err)[:200]}", None
    except Exception as err:  # noqa: BLE001 - exactly what the fuzzer looks for
        return f"internal: {type(err).__name__}: {str(err)[:300]}", None
    state, mismatch = _compare(outputs, reference)
    if mismatch and _matches_onnx_reference(path, feeds, outputs):
        # onnxruntime departs from the ONNX spec here (e.g. pooling output sizes rounded toward
        # zero); edgec computes what ONNX's own reference evaluator computes
        return "ok (onnxruntime differs from the ONNX reference)", None
    return state, mismatch


def _compare(outputs, reference, lenient_nonfinite=False):
    """(state, mismatch description or None) for edgec's outputs against a reference."""
    import numpy as np

    state = "ok"
    for name, want in reference.items():
        got = outputs.get(name)
        if got is None or got.shape != want.shape:
            return "ok", f"output {name}: shape {None if got is None else got.shape} vs onnxruntime {want.shape}"
        if want.dtype.kind == "f":
            finite = np.isfinite(want) & np.isfinite(got)
            if lenient_nonfinite:
                if not np.array_equal(np.isfinite(want), np.isfinite(got)):
                    return "ok", f"output {name}: non-finite values differ"
            elif np.isnan(got).any() and not np.isnan(want).any() or not np.array_equal(np.isinf(want), np.isinf(got)):
                return "ok", f"output {name}: non-finite values differ from onnxruntime"
            elif (np.isnan(want) & ~np.isnan(got)).any():
                # documented deviation (docs/RELIABILITY.md): NaN through min/max-based ops (Clip,
                # HardSigmoid, Max, MaxPool) follows IEEE maxNum, which returns the other operand
                state = "ok (NaN not propagated)"
            scale = max(1.0, float(np.abs(want[finite]).max())) if finite.any() else 1.0
            tolerance = 1e-2 if want.dtype == np.float16 else 1e-3
            err = float(np.abs(got[finite].astype(np.float64) - want[finite]).max()) if finite.any() else 0.0
            if err > tolerance * scale:
                return "ok", f"output {name}: max abs difference {err:.3g} from onnxruntime"
        elif not np.array_equal(got, want):
            return "ok", f"output {name}: values differ from onnxruntime"
    return state, None


def _matches_onnx_reference(path, feeds, outputs) -> bool:
    import warnings

    from onnx.reference import ReferenceEvaluator

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            evaluator = ReferenceEvaluator(path)
            reference = dict(zip(evaluator.output_names, evaluator.run(None, feeds)))
    except Exception:  # noqa: BLE001 - the reference cannot run it: no verdict
        return False
    return _compare(outputs, reference, lenient_nonfinite=True)[1] is None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=600)
    parser.add_argument("--seed", type=int, default=int(time.time()))
    parser.add_argument("--findings", default=None, help="write minimized findings here")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        _worker()
        return 0
    report = fuzz(args.seconds, args.seed, args.findings)
    print(json.dumps(report, indent=1))
    return 1 if report["findings"] else 0


if __name__ == "__main__":
    sys.exit(main())
