"""The reference for ``--verify`` of a quantized build: the original model with each quantized
weight replaced by the float values the quantized model stands for.

``--quantize int4`` records, per replaced constant, the pair (float constant as it was in the
graph, effective float values: the numpy dequantization, divided by AWQ's scale where AWQ
scaled it). Here each pair's constant is found among the model's own weights by content (as is,
or transposed: a Gemm/Linear stores ``[N, K]``, the graph's matmul holds ``[K, N]``) and
replaced, so onnxruntime or PyTorch computes the quantized model independently of edgec's
kernels, packing and AWQ folding.
"""

from __future__ import annotations

import copy
import hashlib

import numpy as np

from edgec.errors import VerificationError


def _key(arr: np.ndarray) -> tuple:
    arr = np.ascontiguousarray(arr)
    return arr.shape, str(arr.dtype), hashlib.sha256(arr.tobytes()).hexdigest()


class _Lookup:
    """Effective values by the content of the float constant (and of its transpose)."""

    def __init__(self, substitutions):
        self.by_key: dict = {}
        self.found: set = set()
        for i, (graph, effective) in enumerate(substitutions):
            graph, effective = np.asarray(graph), np.asarray(effective, np.float32)
            self.by_key.setdefault(_key(graph), (i, effective))
            self.by_key.setdefault(_key(graph.T), (i, np.ascontiguousarray(effective.T)))
        self.count = len(substitutions)

    def replace(self, arr: np.ndarray):
        if arr.ndim != 2 or arr.dtype != np.float32:
            return None
        hit = self.by_key.get(_key(arr))
        if hit is None:
            return None
        self.found.add(hit[0])
        return hit[1]

    def check(self) -> None:
        if len(self.found) != self.count:
            raise VerificationError(f"{self.count - len(self.found)} of the {self.count} quantized weights are "
                                    "computed in the model rather than stored in it: no dequantized reference")


def _onnx(model, lookup: _Lookup):
    import onnx
    from onnx import numpy_helper

    proto = copy.deepcopy(model) if isinstance(model, onnx.ModelProto) else onnx.load(str(model))

    def visit(graph):
        for init in graph.initializer:
            new = lookup.replace(numpy_helper.to_array(init))
            if new is not None:
                init.CopyFrom(numpy_helper.from_array(new, init.name))
        for node in graph.node:
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.TENSOR:
                    new = lookup.replace(numpy_helper.to_array(attr.t))
                    if new is not None:
                        attr.t.CopyFrom(numpy_helper.from_array(new, attr.t.name))
                if attr.type == onnx.AttributeProto.GRAPH:  # If/Loop bodies
                    visit(attr.g)
                for sub in attr.graphs:
                    visit(sub)

    visit(proto.graph)
    return proto


def _torch(model, lookup: _Lookup):
    import torch

    module = copy.deepcopy(model) if isinstance(model, torch.nn.Module) else torch.export.load(str(model)).module()
    with torch.no_grad():
        for tensor in [*module.parameters(), *module.buffers()]:
            new = lookup.replace(tensor.detach().cpu().numpy())
            if new is not None:
                tensor.copy_(torch.from_numpy(new))
    return module


def dequantized_model(model, substitutions):
    """The model (ONNX proto or torch module) computing what the quantized build computes.

    Raises :class:`VerificationError` when a quantized weight is not among the model's weights.
    """
    from edgec.frontend import model_format

    lookup = _Lookup(substitutions)
    result = _onnx(model, lookup) if model_format(model) == "onnx" else _torch(model, lookup)
    lookup.check()
    return result
