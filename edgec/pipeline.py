"""The compiler's one flow: import → graph passes → lower → schedule → lift weights → build → bundle.

This is the only place that calls the stations in order. Each phase logs a progress line, and
with ``dump_ir`` writes the module after it as ``phaseN-<name>.py``.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field

from edgec import __version__, progress
from edgec.errors import CompileError, EdgecError
from edgec.signature import TensorSpec

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CompileOptions:
    """Everything besides the model and target that changes the artifact."""

    layout: str = "auto"
    quantize: str | None = None
    calibration: str | None = None  # .npz of model inputs: AWQ instead of round-to-nearest
    tuning_db: str | None = None
    ndk: str | None = None
    arch: str | None = None
    runtime_dir: str | None = None  # aarch64 TVM runtime libraries to bundle, instead of the cache
    sparse_sample: str | None = None  # .npz of model inputs: time both sparse-conv dataflows per layer group
    # --quantize int4 choices (passes/int4/quantize.py Int4Options); None/False/True are the defaults
    int4_group: int | None = None  # 32, 64 or 128 [128]
    int4_symmetric: bool = False
    int4_embeddings: bool = False  # constant Gather tables too
    int4_lm_head: bool = True

    def __post_init__(self):
        if self.layout not in ("auto", "none"):
            raise ValueError(f"layout must be 'auto' or 'none', not {self.layout!r}")
        if self.quantize not in (None, "int4"):
            raise ValueError(f"quantize must be 'int4' or unset, not {self.quantize!r}")
        if self.calibration and self.quantize != "int4":
            raise ValueError("calibration applies only with quantize='int4'")
        if self.quantize != "int4" and self.int4_given():
            raise ValueError("int4_group/int4_symmetric/int4_embeddings/int4_lm_head apply only with quantize='int4'")
        if self.quantize == "int4":
            self.int4_options()  # validates the group size

    def int4_given(self) -> bool:
        return (self.int4_group is not None or self.int4_symmetric or self.int4_embeddings
                or not self.int4_lm_head)

    def int4_options(self):
        from edgec.passes.int4.quantize import Int4Options

        return Int4Options(group=self.int4_group or Int4Options.group, symmetric=self.int4_symmetric,
                           include_lm_head=self.int4_lm_head, include_embeddings=self.int4_embeddings)

    def to_json(self) -> dict:
        int4 = None
        if self.quantize == "int4":
            o = self.int4_options()
            int4 = {"group": o.group, "symmetric": o.symmetric, "embeddings": o.include_embeddings,
                    "lm_head": o.include_lm_head}
        return {"layout": self.layout, "quantize": self.quantize, "int4": int4, "arch": self.arch,
                "calibration": os.path.basename(self.calibration) if self.calibration else None,
                "sparse_sample": os.path.basename(self.sparse_sample) if self.sparse_sample else None}


@dataclass
class CompileReport:
    phases: list[tuple[str, float]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    # standalone layout-changing kernel launches: {"before": with --layout none, "after": as built}
    layout_transforms: dict | None = None
    # --quantize int4: (float constant, the float values the quantized model uses instead), for
    # --verify's reference (edgec/quant_reference.py); in memory only, never in the artifact
    int4_substitutions: list = field(default_factory=list, repr=False)

    def to_json(self) -> dict:
        return {"phases": [{"name": n, "seconds": round(s, 3)} for n, s in self.phases], "notes": self.notes,
                "layout_transforms": self.layout_transforms}


class _Phases:
    """Times each phase, logs a progress line, and dumps the IR between phases when asked."""

    def __init__(self, report: CompileReport, dump_ir: str | None):
        self.report, self.dump_ir, self.index = report, dump_ir, 0
        if dump_ir:
            os.makedirs(dump_ir, exist_ok=True)

    def run(self, name: str, fn, *args):
        self.index += 1
        logger.info("[%d] %s", self.index, name)
        progress.stage(name)
        start = time.perf_counter()
        try:
            result = fn(*args)
        except EdgecError:
            raise
        except Exception as err:
            raise CompileError(f"{name} failed: {_last_line(err)}") from err
        self.report.phases.append((name, time.perf_counter() - start))
        if self.dump_ir and hasattr(result, "script"):
            path = os.path.join(self.dump_ir, f"phase{self.index}-{name.replace(' ', '-')}.py")
            with open(path, "w", encoding="utf-8") as f:
                f.write(result.script())
        return result


def lower_model(source, preset, inputs, options, phases, constants=None):
    """Steps 1–3 of the flow, shared by ``compile`` and ``tune``: import, graph passes, lowering.

    Returns the imported model and the module whose PrimFuncs are ready to be scheduled.
    """
    imported, tvm_target, quantizer = _import(source, preset, inputs, options, phases, constants)
    return imported, lower_imported(imported.mod, tvm_target, options.layout, phases, quantizer)


def _import(source, preset, inputs, options, phases, constants):
    """Step 1, and the int4 quantizer the options ask for (None without ``quantize``)."""
    import tvm

    from edgec.frontend import import_model

    tvm_target = tvm.target.Target(preset.target)
    # Converters that emit kernels (recurrences) read the target from the context.
    with tvm_target:
        imported = phases.run("import", import_model, source, inputs, constants)
    quantizer = None
    if options.quantize == "int4":
        from edgec.passes.int4.quantize import QuantizeInt4, load_calibration

        quantizer = QuantizeInt4(tvm_target, options.int4_options(), calibration=load_calibration(options.calibration))
    return imported, tvm_target, quantizer


def lower_imported(mod, tvm_target, layout: str, phases, quantizer=None):
    """Steps 2–3 on an imported module: graph passes (layout planning when ``layout`` is auto), lowering."""
    return plan_and_lower(simplify_graph(mod, tvm_target, phases, quantizer), tvm_target, layout, phases)


def simplify_graph(mod, tvm_target, phases, quantizer=None):
    """Step 2 up to layout planning: TVM's inference simplifications, then ours."""
    import tvm
    from tvm import relax

    from edgec.passes.int4.fuse import FuseInt4Dequant
    from edgec.passes.sparse_conv.fuse import FuseSparseEpilogue

    graph_passes = [
        relax.transform.DecomposeOpsForInference(),
        relax.transform.CanonicalizeBindings(),
        relax.transform.FoldConstant(),
        FuseSparseEpilogue(),  # BatchNorm, residual add and ReLU into sparse convs
        FuseInt4Dequant(tvm_target),
        *([quantizer] if quantizer is not None else []),  # --quantize int4
    ]
    mod = phases.run("graph passes", tvm.transform.Sequential(graph_passes), mod)
    if quantizer is not None:
        phases.report.notes.extend(quantizer.notes)
        phases.report.int4_substitutions = quantizer.substitutions
    return mod


def plan_and_lower(mod, tvm_target, layout: str, phases):
    """Layout planning (``layout`` auto), then step 3: lower to TIR and fuse."""
    import tvm
    from tvm import relax

    from edgec.passes import PlanLayout
    from edgec.passes.layout_fold import FoldLayoutIntoConsumers, FoldLayoutIntoProducers
    from edgec.passes.special_values import LEGALIZE as SPECIAL_VALUE_LEGALIZE
    from edgec.passes.special_values import ExactReductionIdentity
    from edgec.passes.vector_math import legalize_map as vector_math_legalization
    from edgec.schedules import is_gpu

    if layout == "auto":
        mod = phases.run("plan layout", PlanLayout(tvm_target), mod)
    lowering = [
        relax.backend.DispatchSampling(),
        relax.backend.DispatchSortScan(),
        relax.transform.LegalizeOps({**SPECIAL_VALUE_LEGALIZE, **vector_math_legalization(tvm_target)}),
        # CPU only: TVM's GPU cross-thread reductions recognize max/min by their finite identity
        *([] if is_gpu(tvm_target) else [ExactReductionIdentity()]),
        relax.transform.AnnotateTIROpPattern(),
        relax.transform.FoldConstant(),
        relax.transform.FuseOps(),
        *([FoldLayoutIntoConsumers(), FoldLayoutIntoProducers()] if layout == "auto" else []),
        relax.transform.FuseTIR(),
    ]
    with tvm_target:
        return phases.run("lower", tvm.transform.Sequential(lowering), mod)


def compile_model(
    source,
    target: str = "host",
    inputs: dict[str, TensorSpec] | None = None,
    options: CompileOptions | None = None,
    dump_ir: str | None = None,
    constants: dict | None = None,
):
    """Compile ``source`` (ONNX/.pt2 path, ``onnx.ModelProto`` or ``nn.Module``) into an Artifact.

    ``constants`` binds ONNX graph inputs to fixed values at build time (shape tensors).
    """
    import tvm

    from edgec.artifact import Artifact
    from edgec.passes import LiftWeights
    from edgec.schedules import apply_schedules, is_gpu
    from edgec.targets import resolve
    from edgec.targets.build import build_library

    options = options or CompileOptions()
    report = CompileReport()
    phases = _Phases(report, dump_ir)
    preset = resolve(target, arch=options.arch)
    tvm_target = tvm.target.Target(preset.target)
    gpu = is_gpu(tvm_target)

    # 0. Sparse autotuning: each sparse-conv layer group's dataflow, timed on sample inputs.
    from edgec.passes.sparse_conv.ops import dataflow_choices

    sparse = None
    if options.sparse_sample:
        from edgec.passes.sparse_conv.tune import tune_for_compile

        sparse = phases.run("sparse tuning", tune_for_compile, source, preset, inputs, options, constants)

    # 1–3. Import, graph passes, lowering.
    with dataflow_choices(sparse["groups"] if sparse else None):
        imported, _, quantizer = _import(source, preset, inputs, options, phases, constants)
        simplified = simplify_graph(imported.mod, tvm_target, phases, quantizer)
        mod = plan_and_lower(simplified, tvm_target, options.layout, phases)
        report.layout_transforms = phases.run("count layout transforms", _count_layout_transforms,
                                              simplified, mod, tvm_target, options.layout)

    # 4. Schedules: tuned records where a database has them, default rules for the rest
    #    (GPU kernels must all be scheduled).
    # a database the user names replaces the shipped one: the manifest's hash is then the user's
    scheduled = phases.run("schedule", apply_schedules, mod, tvm_target,
                           [options.tuning_db] if options.tuning_db else [],
                           [] if options.tuning_db else _shipped_databases(preset))
    mod = scheduled.mod
    report.notes.extend(scheduled.notes)

    # 5. Weights leave the code; the artifact carries them as a separate file.
    lift = LiftWeights()
    mod = phases.run("lift weights", lift, mod)

    # 6. Codegen and link for the device.
    library = phases.run("build", build_library, mod, preset, tvm_target, gpu, options.ndk)

    # 7. Bundle.
    from edgec.artifact import LIBRARY, WEIGHTS
    from edgec.runtime.device_bundle import extra_files

    weights_blob = tvm.runtime.save_param_dict(
        {f"w{i}": tvm.runtime.tensor(w) for i, w in enumerate(lift.weights)}
    )
    manifest = {
        "format": "edgec-artifact",
        "format_version": 1,
        "edgec_version": __version__,
        "tvm_version": tvm.__version__,
        "preset": preset.name,
        "target": _target_json(tvm_target),
        "toolchain": preset.toolchain,
        "arch": preset.arch,
        "device": preset.device_kind if preset.device_kind in ("cuda", "vulkan") else "cpu",
        "model": {"sha256": imported.model_sha256, "format": imported.source_format},
        "options": options.to_json(),
        "layout_transforms": report.layout_transforms,
        "bound_constants": sorted(constants or {}),
        "tuning_db": scheduled.database_sha256,
        "sparse_dataflows": sparse,
        "inputs": [s.to_json() for s in imported.inputs],
        "outputs": [s.to_json() for s in imported.outputs],
        "weights": [
            {"name": f"w{i}", "shape": list(w.shape), "dtype": str(w.dtype)} for i, w in enumerate(lift.weights)
        ],
    }
    files = {LIBRARY: library, WEIGHTS: bytes(weights_blob)}
    files.update(phases.run("bundle device runtime", extra_files, preset, options, manifest))
    return Artifact(manifest, files), report


def _count_layout_transforms(simplified, lowered, tvm_target, layout: str) -> dict:
    """Standalone layout kernels as built, and without the planner: the simplified graph lowered
    a second time with ``--layout none`` (no build; the graph passes before planning, constant
    folding above all, are not repeated)."""
    from edgec.passes.layout_count import count_layout_transforms

    after = count_layout_transforms(lowered)
    if layout == "none":
        return {"before": after, "after": after}
    unplanned = plan_and_lower(simplified, tvm_target, "none", _Phases(CompileReport(), None))
    return {"before": count_layout_transforms(unplanned), "after": after}


def _shipped_databases(preset) -> list[str]:
    """The database shipped with edgec for this preset, if there is one."""
    from edgec.schedules.shipped import shipped_database

    shipped = shipped_database(preset.name)
    return [shipped] if shipped else []


def _target_json(target) -> dict:
    """The full TVM target (host included) as plain JSON values."""

    def plain(value):
        if hasattr(value, "items"):
            return {str(k): plain(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)) or (hasattr(value, "__iter__") and not isinstance(value, str)):
            return [plain(v) for v in value]
        if isinstance(value, (bool, int, float)) or value is None:
            return value
        return str(value)

    return plain(target.export())


def _last_line(err: BaseException) -> str:
    lines = [ln.strip() for ln in str(err).strip().splitlines() if ln.strip()]
    return lines[-1][:400] if lines else type(err).__name__
