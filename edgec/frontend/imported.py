"""What every frontend returns: a Relax module and the model's signature."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from edgec.errors import ModelError
from edgec.signature import TensorSpec


@dataclass
class ImportedModel:
    mod: object  # tvm.IRModule whose "main" takes the inputs in order and returns the outputs
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    source_bytes: bytes = b""
    source_format: str = "onnx"
    notes: list[str] = field(default_factory=list)

    @property
    def model_sha256(self) -> str:
        return hashlib.sha256(self.source_bytes).hexdigest()


def check_pt2_archive(data: bytes, path: str) -> None:
    """A .pt2 file is a zip archive; anything else is refused before torch is imported."""
    import io
    import zipfile

    if not zipfile.is_zipfile(io.BytesIO(data)):
        raise ModelError(f"{path} is not a torch.export archive (.pt2 files are zip archives)")


def read_model_file(path: str) -> bytes:
    """The bytes of a model file; a missing or unreadable one is a one-line ModelError."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise ModelError(f"model file {path} does not exist") from None
    except IsADirectoryError:
        raise ModelError(f"model path {path} is a directory, not a file") from None
    except OSError as err:
        raise ModelError(f"cannot read model file {path}: {err.strerror}") from None
