"""End to end: build three example models in PyTorch, export ONNX, compile for this machine and
for a Jetson Orin, save the artifacts, run the host build and compare it with onnxruntime.

    python examples/compile_and_run.py [--out build/examples] [--targets host,jetson]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import edgec  # noqa: E402
from edgec.errors import ToolchainError  # noqa: E402
from examples import models  # noqa: E402


def onnxruntime_outputs(path: str, feeds: dict) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    return session.run(None, feeds)[0]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="build/examples", help="folder for ONNX files and artifacts")
    parser.add_argument("--targets", default="host,jetson", help="comma-separated targets to compile for")
    args = parser.parse_args(argv)
    targets = [t for t in args.targets.split(",") if t]
    os.makedirs(args.out, exist_ok=True)

    print(f"exporting {len(models.EXAMPLES)} models to ONNX in {args.out}/")
    paths = models.export_all(args.out)
    worst = 0.0
    for name, path in paths.items():
        input_name = models.EXAMPLES[name][1]
        for target in targets:
            start = time.perf_counter()
            try:
                artifact = edgec.compile(path, target)
            except ToolchainError as err:  # e.g. no nvcc for jetson: say so, keep the host run
                print(f"  {name:<13} {target:<7} not built: {err}")
                continue
            saved = os.path.join(args.out, f"{name}.{target}.edgec")
            artifact.save(saved)
            print(f"  {name:<13} {target:<7} compiled in {time.perf_counter() - start:5.1f}s -> {saved}")
            if target != "host":
                continue
            # The batch dim stayed symbolic: one artifact serves any batch size.
            feeds = {input_name: models.example_input(name, batch=2)}
            got = edgec.load(saved).run(feeds)["logits"]
            want = onnxruntime_outputs(path, feeds)
            error = float(np.abs(got - want).max())
            worst = max(worst, error)
            print(f"  {name:<13} host    batch 2: max |edgec - onnxruntime| = {error:.2e}")
    ok = worst < 1e-3
    print(f"{'OK' if ok else 'MISMATCH'}: worst error {worst:.2e}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
