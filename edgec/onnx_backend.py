"""edgec as an ``onnx.backend.base.Backend``, so ONNX's own backend tests can drive it.

``prepare`` compiles the model with ``edgec.compile(model, "host")``; ``run`` executes the
artifact and returns the outputs in the graph's output order.

Shape tensors. Many ONNX models take, as graph *inputs*, tensors that decide output shapes or the
axes an op works on: Reshape's ``shape``, Expand's ``shape``, Resize's ``sizes``/``scales``, TopK's
``K``, Slice's ``starts``/``ends``/``axes``, a Reduce's ``axes``, ... (:data:`SHAPE_INPUTS` lists
every slot). An AOT compiler needs those values at build time, as TensorRT does for its "shape
tensors". When a model feeds such a slot straight from a graph input, ``prepare`` defers
compilation to the first ``run``, which compiles with ``edgec.compile(..., constants={name:
value})`` for the values it was given (and again if later runs give other values). Everything
else stays a runtime input. ``BackendRep.bound_constants`` names the inputs that were bound.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx.backend.base import Backend, BackendRep

# op_type -> input positions whose values decide output shapes or the axes the op works on
SHAPE_INPUTS: dict[str, tuple[int, ...]] = {
    "Reshape": (1,), "Expand": (1,), "Tile": (1,), "ConstantOfShape": (0,),
    "Resize": (1, 2, 3), "Upsample": (1,), "TopK": (1,), "Range": (0, 1, 2),
    "Slice": (1, 2, 3, 4), "Pad": (1, 3), "Squeeze": (1,), "Unsqueeze": (1,), "Split": (1,),
    "OneHot": (1,), "CenterCropPad": (1,), "CumSum": (1,), "NonMaxSuppression": (2,),
    "Col2Im": (1, 2), "MaxUnpool": (2,), "AffineGrid": (1,), "DFT": (1, 2), "STFT": (1, 3),
    "MelWeightMatrix": (0, 1, 2, 3, 4), "BlackmanWindow": (0,), "HannWindow": (0,),
    "HammingWindow": (0,), "ReduceSum": (1,), "ReduceMean": (1,), "ReduceMax": (1,),
    "ReduceMin": (1,), "ReduceProd": (1,), "ReduceL1": (1,), "ReduceL2": (1,),
    "ReduceLogSum": (1,), "ReduceLogSumExp": (1,), "ReduceSumSquare": (1,),
}


def shape_inputs(model: onnx.ModelProto) -> list[str]:
    """Graph inputs that feed a shape slot of some top-level node, in graph input order."""
    initializers = {i.name for i in model.graph.initializer}
    runtime = [i.name for i in model.graph.input if i.name not in initializers]
    wanted = set()
    for node in model.graph.node:
        for pos in SHAPE_INPUTS.get(node.op_type, ()) if node.domain in ("", "ai.onnx") else ():
            if pos < len(node.input) and node.input[pos] in runtime:
                wanted.add(node.input[pos])
    return [name for name in runtime if name in wanted]


class EdgecRep(BackendRep):
    """A prepared model: the artifact, or the model waiting for its shape tensors' values."""

    def __init__(self, model: onnx.ModelProto, target: str = "host"):
        self.model = model
        self.target = target
        initializers = {i.name for i in model.graph.initializer}
        self.input_names = [i.name for i in model.graph.input if i.name not in initializers]
        self.output_names = [o.name for o in model.graph.output]
        self.bound_constants = shape_inputs(model)
        self._artifacts: dict[bytes, object] = {}
        if not self.bound_constants:
            self._artifacts[b""] = self._compile({})

    def _compile(self, constants: dict):
        import edgec

        return edgec.compile(self.model, self.target, constants=constants or None)

    def run(self, inputs, **kwargs):  # noqa: ARG002 - the base signature
        if isinstance(inputs, dict):
            feeds = dict(inputs)
        else:
            inputs = [inputs] if isinstance(inputs, np.ndarray) else list(inputs)
            feeds = dict(zip(self.input_names, inputs))
        constants = {name: np.asarray(feeds.pop(name)) for name in self.bound_constants if name in feeds}
        key = b"".join(
            name.encode() + str(v.dtype).encode() + str(v.shape).encode() + v.tobytes()
            for name, v in constants.items()
        )
        artifact = self._artifacts.get(key)
        if artifact is None:
            artifact = self._artifacts[key] = self._compile(constants)
        results = artifact.run(feeds)
        return [results[name] for name in self.output_names]


class EdgecBackend(Backend):
    """ONNX backend API over ``edgec.compile`` for the host CPU."""

    @classmethod
    def is_compatible(cls, model, device: str = "CPU", **kwargs) -> bool:  # noqa: ARG003
        return cls.supports_device(device)

    @classmethod
    def supports_device(cls, device: str) -> bool:
        return device.upper() == "CPU"

    @classmethod
    def prepare(cls, model, device: str = "CPU", **kwargs) -> EdgecRep:  # noqa: ARG003
        if not cls.supports_device(device):
            from edgec.errors import TargetError

            raise TargetError(f"the edgec ONNX backend runs on CPU, not {device!r}")
        if not isinstance(model, onnx.ModelProto):
            from edgec.frontend.onnx import load

            model = load(model)
        return EdgecRep(model)

    @classmethod
    def run_model(cls, model, inputs, device: str = "CPU", **kwargs):
        return cls.prepare(model, device, **kwargs).run(inputs)

    @classmethod
    def run_node(cls, node, inputs, device: str = "CPU", outputs_info=None, **kwargs):
        """Run one node on ``inputs``; output types come from ONNX shape inference."""
        names = [n for n in node.input if n]
        graph_inputs = [
            onnx.helper.make_tensor_value_info(
                name, onnx.helper.np_dtype_to_tensor_dtype(np.asarray(v).dtype), np.asarray(v).shape
            )
            for name, v in zip(names, inputs)
        ]
        graph_outputs = [onnx.helper.make_empty_tensor_value_info(o) for o in node.output if o]
        graph = onnx.helper.make_graph([node], "node", graph_inputs, graph_outputs)
        model = onnx.shape_inference.infer_shapes(onnx.helper.make_model(graph))
        model.ir_version = min(model.ir_version, 10)
        return cls.prepare(model, device, **kwargs).run(list(inputs))


prepare = EdgecBackend.prepare
run_model = EdgecBackend.run_model
run_node = EdgecBackend.run_node
supports_device = EdgecBackend.supports_device
