"""The sparse autotuner: picks each layer group's dataflow by timing both on sample inputs.

The model is compiled twice, every ``auto`` conv on one dataflow, and run on the sample with a
VM instrument that times each kernel call. Kernel names carry their layer group (kernel volume,
channels, dtype, epilogue), so each group's time under either dataflow is known from two
builds; each group takes the faster one. The gathered dataflow also pays for its pair lists,
so a mixed choice is kept only if the whole model, rebuilt with it, beats the better uniform
build. Runs on the host: the sample is timed where the compiler runs.
"""

from __future__ import annotations

import collections
import logging
import time

import numpy as np

from edgec.errors import InputError
from edgec.passes.sparse_conv.ops import DATAFLOWS, dataflow_choices

logger = logging.getLogger(__name__)
_PREFIX = "sparse_conv_"


def load_sample(path: str) -> dict[str, np.ndarray]:
    try:
        with np.load(path) as data:
            return {k: data[k] for k in data.files}
    except (OSError, ValueError) as err:
        raise InputError(f"--sparse-sample {path}: cannot read it as .npz ({err})") from None


def _profile(artifact, sample, runs: int) -> tuple[dict[str, float], float]:
    """({kernel symbol: best ms per inference}, best whole-model ms) on the host."""
    from edgec.runtime.host import HostRunner

    feeds = artifact_feeds(artifact, sample)
    plain = HostRunner(artifact)
    plain._call(feeds)  # warm-up; a bad sample fails here
    whole = []
    for _ in range(runs):
        start = time.perf_counter()
        plain._call(feeds)
        whole.append((time.perf_counter() - start) * 1e3)

    timed = HostRunner(artifact)
    starts: dict[str, float] = {}
    current: dict[str, float] = collections.defaultdict(float)

    def instrument(func, symbol, before, ret, *args):
        if before:
            starts[symbol] = time.perf_counter()
        else:
            current[symbol] += (time.perf_counter() - starts[symbol]) * 1e3
        return 0

    timed.vm.set_instrument(instrument)
    per_run = []
    for _ in range(runs):
        current.clear()
        timed._call(feeds)
        per_run.append(dict(current))
    kernels = {k: min(r.get(k, 0.0) for r in per_run) for k in per_run[0]}
    return kernels, min(whole)


def artifact_feeds(artifact, sample):
    from edgec.signature import check_feeds

    return check_feeds(artifact.inputs, sample)


def _groups(kernels: dict[str, float], flow: str) -> dict[str, float]:
    prefix = f"{_PREFIX}{flow}_"
    return {k[len(prefix):]: v for k, v in kernels.items() if k.startswith(prefix)}


def tune_dataflows(compile_fn, sample: dict, runs: int = 3) -> dict:
    """``compile_fn()`` builds the model (an Artifact) under the current dataflow choices.

    Returns the record for the manifest: {"groups": {group: dataflow}, "ms": {...}, "model_ms": {...}}.
    """
    kernels, whole = {}, {}
    for flow in DATAFLOWS:
        with dataflow_choices(force=flow):
            art = compile_fn()
        measured, whole[flow] = _profile(art, sample, runs)
        kernels[flow] = _groups(measured, flow)
    groups = sorted(set(kernels[DATAFLOWS[0]]) | set(kernels[DATAFLOWS[1]]))
    if not groups:
        return {"groups": {}, "ms": {}, "model_ms": whole}
    choice = {g: min(DATAFLOWS, key=lambda f: kernels[f].get(g, float("inf"))) for g in groups}
    ms = {g: {f: round(kernels[f].get(g, float("nan")), 3) for f in DATAFLOWS} for g in groups}
    uniform = min(DATAFLOWS, key=lambda f: whole[f])
    if len(set(choice.values())) > 1:
        with dataflow_choices(groups=choice):
            _, whole["mixed"] = _profile(compile_fn(), sample, runs)
        if whole["mixed"] > whole[uniform]:
            choice = {g: uniform for g in groups}
    elif whole[uniform] < whole[next(iter(choice.values()))]:
        choice = {g: uniform for g in groups}
    logger.info("sparse dataflows: %s", choice)
    return {"groups": choice, "ms": ms, "model_ms": {k: round(v, 3) for k, v in whole.items()}}


def tune_for_compile(source, preset, inputs, options, constants=None) -> dict:
    """The pipeline's hook: tune on ``options.sparse_sample`` by compiling without it."""
    import dataclasses

    from edgec.pipeline import compile_model

    if preset.name != "host":
        raise InputError(f"--sparse-sample times kernels on this machine; it applies to target host, "
                         f"not {preset.name}")
    sample = load_sample(options.sparse_sample)
    inner = dataclasses.replace(options, sparse_sample=None, layout="none")
    return tune_dataflows(lambda: compile_model(source, preset.name, inputs, inner, constants=constants)[0], sample)
