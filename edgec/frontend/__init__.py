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


def import_model(
    source, inputs: dict[str, TensorSpec] | None = None, constants: dict | None = None
) -> ImportedModel:
    if model_format(source) == "torch":
        if constants:
            raise InputError("constants= binds ONNX graph inputs; it does not apply to PyTorch models")
        from edgec.frontend.torch import import_torch

        return import_torch(source, inputs)
    from edgec.frontend.onnx import import_onnx

    return import_onnx(source, inputs, constants)


__all__ = ["ImportedModel", "import_model", "model_format"]
