"""Check a compiled artifact against an independent reference on random inputs.

The reference is onnxruntime for ONNX models and PyTorch eager for PyTorch models. For a
``--quantize int4`` build it is the same runtime on the dequantized model
(:mod:`edgec.quant_reference`), at the same tolerance (on GPUs, where int4 runs with fp16
activations, a tolerance scaled to each output); the error against the float model is reported
alongside, as information.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from edgec.errors import VerificationError

RTOL = 1e-3
ATOL = 1e-4
# int4 on a GPU computes with fp16 activations and scales (W4A16): an error relative to each
# output's scale, still far below what a wrong weight or kernel does
FP16_RTOL = 2e-2
FP16_ATOL_OF_MAX = 1e-2


@dataclass
class OutputCheck:
    name: str
    max_abs: float
    max_rel: float
    ok: bool


@dataclass
class Verification:
    executed: bool
    how: str
    checks: list[OutputCheck] = field(default_factory=list)
    note: str = ""
    # quantized builds: per output, {"name", "max_abs", "relative_l2"} against the float model
    float_error: list[dict] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.executed and all(c.ok for c in self.checks)

    def to_json(self) -> dict:
        return {
            "executed": self.executed, "how": self.how, "ok": self.ok, "note": self.note,
            "outputs": [c.__dict__ for c in self.checks], "float_error": self.float_error,
        }


def compare(name: str, got: np.ndarray, want: np.ndarray, rtol=RTOL, atol=ATOL) -> OutputCheck:
    got, want = np.asarray(got), np.asarray(want)
    if got.shape != want.shape:
        return OutputCheck(name, float("inf"), float("inf"), False)
    if got.dtype == bool or np.issubdtype(got.dtype, np.integer):
        diff = np.abs(got.astype(np.int64) - want.astype(np.int64))
        max_abs = float(diff.max()) if diff.size else 0.0
        return OutputCheck(name, max_abs, max_abs, max_abs == 0)
    g, w = got.astype(np.float64), want.astype(np.float64)
    both_nan = np.isnan(g) & np.isnan(w)
    diff = np.where(both_nan, 0.0, np.abs(g - w))
    max_abs = float(np.nanmax(diff)) if diff.size else 0.0
    rel = diff / np.maximum(np.abs(w), 1e-12)
    max_rel = float(np.nanmax(rel)) if rel.size else 0.0
    ok = bool(np.all(diff <= atol + rtol * np.abs(w)) and not np.any(np.isnan(diff)))
    return OutputCheck(name, max_abs, max_rel, ok)


def reference_outputs(model, feeds: dict, threads: int | None = None) -> dict:
    """Outputs of the original model: onnxruntime for ONNX, PyTorch for torch programs."""
    from edgec.frontend import model_format

    if model_format(model) == "onnx":
        import onnxruntime as ort

        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        src = model.SerializeToString() if hasattr(model, "SerializeToString") else str(model)
        sess = ort.InferenceSession(src, opts, providers=["CPUExecutionProvider"])
        names = [o.name for o in sess.get_outputs()]
        return dict(zip(names, sess.run(names, feeds)))
    import torch

    if isinstance(model, torch.nn.Module):
        try:
            module = model.eval()
        except NotImplementedError:  # a loaded .pt2's module (the dequantized reference): already in eval form
            module = model
    else:
        module = torch.export.load(str(model)).module()
    with torch.no_grad():
        result = module(*[torch.from_numpy(v) for v in feeds.values()])
    leaves = torch.utils._pytree.tree_leaves(result)
    names = ["output"] if len(leaves) == 1 else [f"output{i}" for i in range(len(leaves))]
    return {n: t.detach().numpy() for n, t in zip(names, leaves)}


def verify_artifact(artifact, model, feeds: dict | None = None, rtol=RTOL, atol=ATOL) -> Verification:
    """Run the artifact where it can run here and compare with the reference.

    Raises :class:`VerificationError` on a mismatch. A GPU artifact without a GPU here is
    reported as not executed, never as passed.
    """
    from edgec.runtime import host_arch
    from edgec.signature import random_feeds

    feeds = feeds or random_feeds(artifact.inputs)
    emulate = artifact.arch != host_arch()
    if emulate and artifact.device != "cpu":
        return _check_foreign_gpu_artifact(artifact)
    if artifact.device == "cuda":
        from edgec.runtime.host import _device_for

        try:
            _device_for("cuda")
        except Exception:
            return Verification(False, "not executed", note="no NVIDIA GPU here: the CUDA kernels were not executed")
    if artifact.device == "vulkan":
        from edgec.errors import ExecutionError
        from edgec.targets.vulkan.device import query

        try:
            query()
        except ExecutionError as err:
            return Verification(False, "not executed", note=f"the Vulkan kernels were not executed: {err}")
    reference, float_model = model, None
    if artifact.manifest.get("options", {}).get("quantize") == "int4":
        substitutions = getattr(getattr(artifact, "report", None), "int4_substitutions", None)
        if substitutions is None:
            return Verification(False, "not executed", note="an int4 artifact is verified when it is compiled "
                                "(its dequantized weights are not kept in the artifact)")
        from edgec.quant_reference import dequantized_model

        try:
            reference, float_model = dequantized_model(model, substitutions), model
        except VerificationError as err:
            return Verification(False, "not executed", note=str(err))
    got = artifact.run(feeds, emulate=emulate)
    want = reference_outputs(reference, feeds)
    tolerance = f"rtol={rtol}, atol={atol}"
    if float_model is not None and artifact.device != "cpu":
        tolerance = f"fp16 activations: rtol={max(rtol, FP16_RTOL)}, atol={FP16_ATOL_OF_MAX}·max|reference|"
        checks = [compare(name, got[name], w, max(rtol, FP16_RTOL),
                          max(atol, FP16_ATOL_OF_MAX * float(np.abs(w).max(initial=0.0))))
                  for name, w in zip(got, want.values())]
    else:
        checks = [compare(name, got[name], want_value, rtol, atol)
                  for name, want_value in zip(got, want.values())]
    where = "qemu-aarch64" if emulate else ("host" if artifact.device == "cpu" else artifact.device)
    result = Verification(True, where if float_model is None else f"{where}, against the dequantized model", checks)
    if float_model is not None:
        floats = reference_outputs(float_model, feeds)
        result.float_error = [_error(name, got[name], f) for name, f in zip(got, floats.values())]
    if not result.ok:
        worst = max(checks, key=lambda c: c.max_abs)
        raise VerificationError(
            f"output {worst.name!r} differs from the reference: max abs error {worst.max_abs:.3g}, "
            f"max rel error {worst.max_rel:.3g} (tolerance {tolerance})"
        )
    return result


def _error(name: str, got, want) -> dict:
    diff = np.asarray(got, np.float64) - np.asarray(want, np.float64)
    norm = float(np.linalg.norm(np.asarray(want, np.float64)))
    return {"name": name, "max_abs": float(np.abs(diff).max()) if diff.size else 0.0,
            "relative_l2": float(np.linalg.norm(diff) / max(norm, 1e-30))}


def _check_foreign_gpu_artifact(artifact) -> Verification:
    """A Jetson artifact on another machine: its GPU kernels cannot run here; check what of the CPU side can."""
    from edgec.errors import EdgecError

    note = f"{artifact.preset} GPU kernels were NOT executed (they need the device's GPU)"
    if artifact.arch != "aarch64":
        return Verification(False, "not executed", note=note + "; only the build was checked")
    try:
        from edgec.runtime.emulated import EmulatedRunner

        EmulatedRunner(artifact).smoke()
    except EdgecError as err:
        return Verification(False, "not executed", note=f"{note}; the CPU side was not checked either: {err}")
    return Verification(False, "not executed", note=note + "; under qemu-aarch64 the bundled runner and "
                        "TVM runtime libraries load")
