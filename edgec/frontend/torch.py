"""PyTorch frontend: ``torch.export`` programs (a ``.pt2`` file, or an ``nn.Module`` with example
inputs) converted with TVM's ``from_exported_program``."""

from __future__ import annotations

import inspect
import io
import os
import warnings

from edgec.errors import CompileError, EdgecError, InputError, ModelError
from edgec.frontend.imported import ImportedModel, check_pt2_archive, read_model_file
from edgec.signature import TensorSpec, random_feeds


def _torch():
    try:
        import torch
    except ImportError:
        raise ModelError("the PyTorch frontend needs torch: pip install 'edgec[torch]'") from None
    return torch


def load_pt2(path: str):
    torch = _torch()
    data = read_model_file(path)
    check_pt2_archive(data, path)
    from edgec.frontend.torch_sparse import register_ops

    register_ops()  # a program may call edgec.nn's sparse ops; torch must know them to load it
    try:
        with warnings.catch_warnings():  # a damaged archive makes torch warn at length before it raises
            warnings.simplefilter("ignore")
            program = torch.export.load(io.BytesIO(data))
    except Exception as err:  # torch raises many types for a damaged archive
        why = _short(err)
        if "check the warnings above" in why:  # torch's message points at the warnings we silenced
            why = "torch could not deserialize it"
        raise ModelError(f"{path} is not a loadable torch.export program: {why}") from None
    return program, data


def export_module(module, inputs: dict[str, TensorSpec]):
    """``torch.export`` an nn.Module; ``inputs`` name the forward() arguments in order.

    Dims given as names stay dynamic (``torch.export.Dim.AUTO``).
    """
    torch = _torch()
    params = [p for p in inspect.signature(module.forward).parameters.values()
              if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    names = [p.name for p in params]
    if not inputs:
        raise InputError(f"compiling an nn.Module needs inputs={{name: (shape, dtype)}} for {names}")
    unknown = [n for n in inputs if n not in names]
    if unknown:
        raise InputError(f"inputs {unknown} are not arguments of {type(module).__name__}.forward{tuple(names)}")
    order = [n for n in names if n in inputs]
    specs = [inputs[n] for n in order]
    if any(s.shape is None for s in specs):
        raise InputError("every nn.Module input needs a shape")
    example = random_feeds(specs, dims={d: 4 for s in specs for d in s.shape if isinstance(d, str)})
    args = tuple(torch.from_numpy(example[n]) for n in order)
    dynamic = {
        n: {axis: torch.export.Dim.AUTO for axis, d in enumerate(inputs[n].shape) if isinstance(d, str)}
        for n in order
    }
    try:
        program = torch.export.export(module.eval(), args, dynamic_shapes=dynamic)
    except Exception as err:
        raise CompileError(f"torch.export failed on {type(module).__name__}: {_short(err)}") from err
    buf = io.BytesIO()
    torch.export.save(program, buf)
    return program, buf.getvalue()


def import_torch(source, inputs: dict[str, TensorSpec] | None = None) -> ImportedModel:
    torch = _torch()
    if isinstance(source, torch.nn.Module):
        program, data = export_module(source, inputs or {})
    else:
        program, data = load_pt2(os.fspath(source))
        if inputs:
            raise InputError("--input does not apply to .pt2 files: their shapes were fixed by torch.export")
    input_specs, output_specs = _signature(program)
    from tvm.relax.frontend.torch import from_exported_program

    from edgec.frontend.torch_sparse import custom_convert_map

    try:
        mod = from_exported_program(program, unwrap_unit_return_tuple=False,
                                    custom_convert_map=custom_convert_map(program))
    except EdgecError:
        raise
    except Exception as err:
        raise CompileError(f"TVM's PyTorch importer failed: {_short(err)}") from err
    return ImportedModel(mod, input_specs, output_specs, source_bytes=data, source_format="torch")


def _signature(program) -> tuple[list[TensorSpec], list[TensorSpec]]:
    torch = _torch()
    sig = program.graph_signature
    placeholders = {n.name: n for n in program.graph.nodes if n.op == "placeholder"}
    symbols: dict[str, str] = {}

    def spec(name: str, meta, public: str) -> TensorSpec:
        dims = []
        for d in meta.shape:
            if isinstance(d, int) or (hasattr(d, "node") and d.node.is_constant()):
                dims.append(int(d))
            else:
                dims.append(symbols.setdefault(str(d), str(d)))
        return TensorSpec(public, tuple(dims), str(meta.dtype).replace("torch.", ""))

    inputs = [spec(n, placeholders[n].meta["val"], n) for n in sig.user_inputs]
    out_node = next(n for n in program.graph.nodes if n.op == "output")
    values = [v for v in torch.utils._pytree.tree_leaves(out_node.args[0])]
    outputs = []
    for i, v in enumerate(values):
        name = "output" if len(values) == 1 else f"output{i}"
        outputs.append(spec(name, v.meta["val"], name))
    return inputs, outputs


def _short(err: BaseException) -> str:
    lines = [ln for ln in str(err).strip().splitlines() if ln.strip()]
    return lines[0][:300] if lines else type(err).__name__
