"""Frontends: turn a model file or object into a Relax module plus its signature."""

from __future__ import annotations

import os

from edgec.errors import InputError, ModelError
from edgec.frontend.imported import ImportedModel
from edgec.signature import TensorSpec


def model_format(source) -> str:
    """``onnx`` or ``torch``, from the object type or the file's suffix and magic bytes."""
    if not isinstance(source, (str, os.PathLike)):
        if type(source).__module__.startswith("onnx"):
            return "onnx"
        return "torch"
    path = os.fspath(source)
    if path.endswith((".pt2", ".pt")):
        return "torch"
    if path.endswith(".onnx"):
        return "onnx"
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except OSError:
        raise ModelError(f"model file {path} does not exist or cannot be read") from None
    return "torch" if magic.startswith(b"PK") else "onnx"


def check_model_file(path: str, inputs: dict[str, TensorSpec] | None = None) -> None:
    """Cheap checks before any compiler runs: the file exists and parses (ONNX: passes the ONNX
    checker and takes ``inputs``; .pt2: is a zip archive). Raises ModelError or InputError."""
    from edgec.frontend.imported import check_pt2_archive, read_model_file

    if model_format(path) == "torch":
        check_pt2_archive(read_model_file(path), path)
        return
    from edgec.frontend.onnx import load, pin_inputs

    pin_inputs(load(path), inputs or {})


def import_model(
    source, inputs: dict[str, TensorSpec] | None = None, constants: dict | None = None
) -> ImportedModel:
    if model_format(source) == "torch":
        if constants:
            raise InputError("constants= binds ONNX graph inputs; it does not apply to PyTorch models")
        from edgec.frontend.torch import import_torch

        imported = import_torch(source, inputs)
    else:
        from edgec.frontend.onnx import import_onnx

        imported = import_onnx(source, inputs, constants)
    check_tensor_sizes(imported.mod)
    return imported


# A tensor this large cannot be part of a real edge model; refuse before anything allocates it.
MAX_TENSOR_ELEMENTS = 1 << 34


def check_tensor_sizes(mod) -> None:
    """Refuse a model that computes a tensor of more than 2^34 elements (constant folding would allocate it)."""
    for func in mod.functions.values():
        for block in getattr(getattr(func, "body", None), "blocks", []):
            for binding in block.bindings:
                check_size(binding.var.ty, repr(binding.var.name))


def check_size(ty, what: str) -> None:
    """Raise ModelError when the tensor type ``ty`` has a static shape over the limit."""
    import math

    values = getattr(getattr(ty, "shape", None), "values", None)
    if values is None or not all(hasattr(v, "value") for v in values):
        return
    dims = [int(v.value) for v in values]
    if math.prod(dims) > MAX_TENSOR_ELEMENTS:
        raise ModelError(f"the model computes a tensor of shape {dims} ({math.prod(dims)} elements) at {what}, "
                         "more than edgec accepts (2^34)")
