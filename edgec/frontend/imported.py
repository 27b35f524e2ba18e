"""What every frontend returns: a Relax module and the model's signature."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

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
