"""Run corpus cases through the real ``edgec`` command line and judge each one.

A case passes when the command exits with code 2 within the time bound, prints exactly one
line on stderr naming no traceback, reports the expected error class in ``--json`` mode, and
writes nothing at its output paths.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

TIME_BOUND_S = 120


def run_case(case: dict, folder: str) -> dict:
    argv = [a.replace("{dir}", folder) for a in case["argv"]]
    outputs = [a for a, prev in zip(argv[1:], argv) if prev in ("-o", "--output")]
    for path in outputs:
        if os.path.exists(path):
            os.unlink(path)
    start = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, "-m", "edgec", *argv, "--json"], capture_output=True, text=True,
                              timeout=TIME_BOUND_S, errors="replace")
    except subprocess.TimeoutExpired:
        return {"name": case["name"], "ok": False, "why": f"no answer within {TIME_BOUND_S} s"}
    seconds = time.perf_counter() - start
    problems = []
    if proc.returncode != 2:
        problems.append(f"exit code {proc.returncode}, expected 2")
    err_lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    if len(err_lines) != 1 or "Traceback" in proc.stderr:
        problems.append(f"stderr is {len(err_lines)} lines: {proc.stderr.strip()[-300:]!r}")
    try:
        reported = json.loads(proc.stdout)["error"]["type"]
    except (ValueError, KeyError, TypeError):
        reported = None
    if reported != case["error"]:
        problems.append(f"error type {reported}, expected {case['error']}")
    left = [p for p in outputs if os.path.exists(p)]
    if left:
        problems.append(f"wrote {left}")
    stray = [n for n in os.listdir(folder) if n.startswith(".edgec-")]
    if stray:
        problems.append(f"left temporary files {stray}")
    return {"name": case["name"], "ok": not problems, "why": "; ".join(problems), "seconds": round(seconds, 2),
            "message": err_lines[-1] if err_lines else ""}


def run_all(folder: str, jobs: int = 2) -> list[dict]:
    with open(os.path.join(folder, "cases.json"), encoding="utf-8") as f:
        cases = json.load(f)
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        return list(pool.map(lambda c: run_case(c, folder), cases))


if __name__ == "__main__":
    results = run_all(sys.argv[1])
    for r in results:
        print(("ok   " if r["ok"] else "FAIL ") + r["name"] + (f": {r['why']}" if r["why"] else f": {r['message']}"))
    print(f"{sum(r['ok'] for r in results)}/{len(results)} cases pass")
