"""The Python face of the CLI: ``edgec.compile``, ``edgec.load`` and :class:`Artifact`."""

from __future__ import annotations

from edgec.artifact import Artifact
from edgec.errors import InputError
from edgec.signature import TensorSpec, parse_input_option


def input_specs(inputs) -> dict[str, TensorSpec]:
    """Accept ``{name: (shape, dtype)}``, ``{name: shape}``, ``{name: "1x3x8x8"}`` or TensorSpecs."""
    specs: dict[str, TensorSpec] = {}
    for name, value in (inputs or {}).items():
        if isinstance(value, TensorSpec):
            specs[name] = value
        elif isinstance(value, str):
            specs[name] = parse_input_option(f"{name}:{value}")
        elif isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], str) and \
                isinstance(value[0], (tuple, list)):
            specs[name] = TensorSpec(name, _dims(name, value[0]), value[1])
        elif isinstance(value, (tuple, list)):
            specs[name] = TensorSpec(name, _dims(name, value), None)
        else:
            raise InputError(f"inputs[{name!r}] must be (shape, dtype), a shape, or 'DIMS[:DTYPE]'")
    return specs


def _dims(name, shape) -> tuple:
    return tuple(d if isinstance(d, int) else (str(d) if d is not None else f"{name}_dim{i}")
                 for i, d in enumerate(shape))


def compile(  # noqa: A001 - mirrors the CLI command
    model,
    target: str = "host",
    inputs=None,
    *,
    quantize: str | None = None,
    calibration: str | None = None,
    int4_group: int | None = None,
    int4_symmetric: bool = False,
    int4_embeddings: bool = False,
    int4_lm_head: bool = True,
    layout: str = "auto",
    tuning_db: str | None = None,
    arch: str | None = None,
    ndk: str | None = None,
    runtime_dir: str | None = None,
    verify: bool = False,
    dump_ir: str | None = None,
    constants: dict | None = None,
    sparse_sample: str | None = None,
) -> Artifact:
    """Compile an ONNX file/ModelProto, a ``.pt2`` file or an ``nn.Module`` for ``target``.

    ``constants`` (ONNX only) maps graph input names to arrays that are bound into the model
    as initializers before import, for inputs that decide output shapes (a Reshape target,
    Resize sizes, TopK's K). The artifact no longer takes those inputs. ``sparse_sample`` (an
    .npz of inputs) times both sparse-conv dataflows per layer group on this host and records the
    choice in the manifest (``sparse_dataflows``). ``int4_group`` (32/64/128), ``int4_symmetric``,
    ``int4_embeddings`` (quantize constant embedding tables) and ``int4_lm_head`` (False keeps the
    LM head float) refine ``quantize="int4"`` and are refused without it (docs/int4.md).
    """
    from edgec.pipeline import CompileOptions, compile_model

    try:
        options = CompileOptions(layout=layout, quantize=quantize, calibration=calibration, tuning_db=tuning_db,
                                 ndk=ndk, arch=arch, runtime_dir=runtime_dir, sparse_sample=sparse_sample,
                                 int4_group=int4_group, int4_symmetric=int4_symmetric,
                                 int4_embeddings=int4_embeddings, int4_lm_head=int4_lm_head)
    except ValueError as err:  # a bad option combination is the caller's mistake (exit 2)
        raise InputError(str(err)) from None
    artifact, report = compile_model(
        model, target, input_specs(inputs), options, dump_ir=dump_ir, constants=constants
    )
    artifact.report = report
    if verify:
        from edgec.verify import verify_artifact

        artifact.verification = verify_artifact(artifact, model)
    return artifact


def load(path: str) -> Artifact:
    """Load an artifact, checking its format and every checksum."""
    return Artifact.load(path)
