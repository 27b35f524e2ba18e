"""ONNX frontend: load → check → pin inputs → simplify → collect unsupported ops → Relax."""

from __future__ import annotations

import logging
import os
import warnings

import numpy as np
import onnx
from google.protobuf.message import DecodeError

from edgec.errors import CompileError, EdgecError, InputError, ModelError, UnsupportedOperatorError
from edgec.frontend import MAX_TENSOR_ELEMENTS, onnx_simplify
from edgec.frontend.imported import ImportedModel, read_model_file
from edgec.signature import TensorSpec

logger = logging.getLogger(__name__)


_ONNX_DTYPES = {
    onnx.TensorProto.FLOAT: "float32", onnx.TensorProto.FLOAT16: "float16",
    onnx.TensorProto.DOUBLE: "float64", onnx.TensorProto.BFLOAT16: "bfloat16",
    onnx.TensorProto.INT8: "int8", onnx.TensorProto.INT16: "int16", onnx.TensorProto.INT32: "int32",
    onnx.TensorProto.INT64: "int64", onnx.TensorProto.UINT8: "uint8", onnx.TensorProto.UINT16: "uint16",
    onnx.TensorProto.UINT32: "uint32", onnx.TensorProto.UINT64: "uint64", onnx.TensorProto.BOOL: "bool",
}


def load(path: str) -> onnx.ModelProto:
    """Read and check an ONNX file; any defect is a one-line :class:`ModelError`."""
    return parse(read_model_file(path), path)


def parse(data: bytes, origin: str = "<bytes>") -> onnx.ModelProto:
    if not data:
        raise ModelError(f"{origin} is empty")
    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError) as err:
        raise ModelError(f"{origin} is truncated or not an ONNX model ({_short(err)})") from None
    if not model.HasField("graph") or not model.graph.node and not model.graph.output:
        raise ModelError(f"{origin} is not an ONNX model: it holds no graph")
    if model.ir_version < 3:
        raise ModelError(f"{origin}: ONNX IR version {model.ir_version} is too old (3 or newer is supported)")
    if model.ir_version > onnx.IR_VERSION:
        raise ModelError(f"{origin}: ONNX IR version {model.ir_version} is newer than this edgec reads "
                         f"(up to {onnx.IR_VERSION}); upgrade edgec or re-export the model")
    _check_wire_types(model, origin)
    _check_opsets(model, origin)
    _check_flags(model.graph, origin)
    if any(i.data_location == onnx.TensorProto.EXTERNAL for i in model.graph.initializer):
        base = os.path.dirname(os.path.abspath(origin)) if os.path.exists(origin) else "."
        try:
            onnx.external_data_helper.load_external_data_for_model(model, base)
        except (OSError, ValueError) as err:
            raise ModelError(f"{origin}: cannot read external weight data: {_short(err)}") from None
    if any(n.op_type in ("SparseConvolution", "ScatterDense") for n in model.graph.node):
        # libspconv graphs hold ops the checker refuses; they become edgec-domain ops first
        from edgec.frontend.onnx_ops.libspconv import rewrite_libspconv

        model = rewrite_libspconv(model, origin)
    _check_tensor_sizes(model, origin)
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as err:
        raise ModelError(f"{origin} fails the ONNX checker: {_short(err)}") from None
    except Exception as err:  # the checker raises C++ errors for odd protobufs
        raise ModelError(f"{origin} fails the ONNX checker: {_short(err)}") from None
    return model


def _check_wire_types(message, origin: str) -> None:
    """Refuse fields stored with the wrong wire type (protobuf keeps them as unknown fields)."""
    from google.protobuf import unknown_fields

    known = message.DESCRIPTOR.fields_by_number
    for field in unknown_fields.UnknownFieldSet(message):
        if field.field_number in known:
            raise ModelError(f"{origin} is malformed: field {known[field.field_number].name!r} of "
                             f"{message.DESCRIPTOR.name} has the wrong type")
    for descriptor, value in message.ListFields():
        if descriptor.message_type is None:
            continue
        for child in ([value] if hasattr(value, "DESCRIPTOR") else value):
            _check_wire_types(child, origin)


# Attributes the ONNX spec defines as 0/1 switches; runtimes read other values differently
# (onnxruntime takes keepdims=2 as false, TVM as true), so a model holding one means nothing definite.
_FLAG_ATTRIBUTES = {"keepdims", "transA", "transB", "ceil_mode", "count_include_pad", "noop_with_empty_axes",
                    "select_last_index", "exclusive", "reverse", "largest", "sorted", "detect_negative",
                    "detect_positive", "upper", "training_mode"}


def _check_flags(graph, origin: str) -> None:
    for node in graph.node:
        for attr in node.attribute:
            if attr.name in _FLAG_ATTRIBUTES and attr.type == onnx.AttributeProto.INT and attr.i not in (0, 1):
                raise ModelError(f"{origin}: node {node.name or '<unnamed>'!r} ({node.op_type}) has {attr.name}="
                                 f"{attr.i}; the ONNX spec allows only 0 or 1")
            for sub in ([attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs)):
                _check_flags(sub, origin)


def _check_opsets(model: onnx.ModelProto, origin: str) -> None:
    newest = onnx.defs.onnx_opset_version()
    for opset in model.opset_import:
        if opset.domain in ("", "ai.onnx") and opset.version > newest:
            raise ModelError(f"{origin} imports ONNX opset {opset.version}, newer than this edgec knows "
                             f"(up to {newest}); upgrade edgec or export at opset {newest} or lower")


def _declared_elements(value_info) -> int:
    dims = value_info.type.tensor_type.shape.dim
    return int(np.prod([d.dim_value for d in dims if d.HasField("dim_value")], dtype=object)) if dims else 1


def _check_tensor_sizes(model: onnx.ModelProto, origin: str) -> None:
    for value in list(model.graph.input) + list(model.graph.output):
        if _declared_elements(value) > MAX_TENSOR_ELEMENTS:
            raise ModelError(f"{origin}: {value.name!r} declares {_declared_elements(value)} elements, "
                             f"more than edgec accepts (2^34)")
    for t in model.graph.initializer:
        count = int(np.prod([int(d) for d in t.dims], dtype=object)) if t.dims else 1
        if any(d < 0 for d in t.dims) or count > MAX_TENSOR_ELEMENTS:
            raise ModelError(f"{origin}: initializer {t.name!r} declares shape {list(t.dims)}, too large to be real")
        if t.HasField("raw_data") and t.data_type in _ONNX_DTYPES:
            itemsize = 1 if t.data_type == onnx.TensorProto.BOOL else np.dtype(
                onnx.helper.tensor_dtype_to_np_dtype(t.data_type)).itemsize
            if len(t.raw_data) != count * itemsize:
                raise ModelError(
                    f"{origin}: initializer {t.name!r} declares shape {list(t.dims)} "
                    f"({count * itemsize} bytes) but holds {len(t.raw_data)} bytes"
                )


def pin_inputs(model: onnx.ModelProto, specs: dict[str, TensorSpec]) -> None:
    """Write the user's ``--input`` dims and dtypes into the graph inputs (in place)."""
    inputs = {i.name: i for i in graph_inputs(model)}
    unknown = [n for n in specs if n not in inputs]
    if unknown:
        raise InputError(f"--input names {unknown} are not inputs of the model; its inputs are {list(inputs)}")
    for name, spec in specs.items():
        tensor_type = inputs[name].type.tensor_type
        declared = _ONNX_DTYPES.get(tensor_type.elem_type)
        if spec.dtype and declared and spec.dtype != declared:
            raise InputError(f"input {name!r}: the model declares dtype {declared}, --input says {spec.dtype}")
        if spec.shape is None:
            continue
        dims = tensor_type.shape.dim
        if len(dims) and len(dims) != len(spec.shape):
            raise InputError(
                f"input {name!r}: --input gives rank {len(spec.shape)} {list(spec.shape)}, "
                f"the model declares rank {len(dims)}"
            )
        if not len(dims):
            for _ in spec.shape:
                dims.add()
        for axis, (dim, want) in enumerate(zip(dims, spec.shape)):
            if isinstance(want, int):
                if dim.HasField("dim_value") and dim.dim_value != want:
                    raise InputError(
                        f"input {name!r}: axis {axis} is fixed to {dim.dim_value} in the model, --input says {want}"
                    )
                dim.dim_value = want
            elif not dim.HasField("dim_value"):
                dim.dim_param = want


def graph_inputs(model: onnx.ModelProto) -> list:
    initializers = {i.name for i in model.graph.initializer}
    return [i for i in model.graph.input if i.name not in initializers]


def _value_spec(value_info, fallback_prefix: str) -> TensorSpec:
    t = value_info.type.tensor_type
    dims = []
    for axis, d in enumerate(t.shape.dim):
        if d.HasField("dim_value"):
            dims.append(int(d.dim_value))
        else:
            dims.append(d.dim_param or f"{fallback_prefix}_dim{axis}")
    return TensorSpec(value_info.name, tuple(dims), _ONNX_DTYPES.get(t.elem_type))


def unsupported_operators(model: onnx.ModelProto) -> list[tuple[str, str, str, int]]:
    """Every node (subgraphs included) whose operator has no converter."""
    from edgec.frontend import onnx_converters

    supported = onnx_converters.supported_ops()
    opsets = {o.domain or "": o.version for o in model.opset_import}
    found = []

    def walk(graph):
        for node in graph.node:
            domain = "" if node.domain in ("", "ai.onnx") else node.domain
            if (domain, node.op_type) not in supported:
                found.append((node.op_type, domain, node.name or "<unnamed>", opsets.get(domain, 0)))
            for attr in node.attribute:
                for sub in ([attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs)):
                    walk(sub)

    walk(model.graph)
    return found


def bind_constants(model: onnx.ModelProto, constants: dict) -> onnx.ModelProto:
    """Turn the named graph inputs into initializers holding the given values (in place).

    For inputs that decide output shapes (a Reshape target, Resize sizes, TopK's K): an AOT
    compiler needs them at build time, as TensorRT's shape tensors. The artifact then no longer
    takes these inputs, and it computes the model for exactly these values.
    """
    inputs = {i.name: i for i in graph_inputs(model)}
    unknown = [n for n in constants if n not in inputs]
    if unknown:
        raise InputError(f"constants {unknown} are not inputs of the model; its inputs are {list(inputs)}")
    for name, value in constants.items():
        declared = onnx.helper.tensor_dtype_to_np_dtype(inputs[name].type.tensor_type.elem_type) \
            if inputs[name].type.tensor_type.elem_type else None
        array = np.asarray(value)
        if declared is not None and array.dtype != declared:
            if not np.can_cast(array, declared, casting="same_kind"):
                raise InputError(f"constant {name!r}: the model declares {declared}, the value is {array.dtype}")
            array = array.astype(declared)
        model.graph.initializer.append(onnx.numpy_helper.from_array(array, name))
        model.graph.input.remove(inputs[name])
    return model


def import_onnx(
    path_or_model, inputs: dict[str, TensorSpec] | None = None, constants: dict | None = None
) -> ImportedModel:
    """Load an ONNX model and convert it to a Relax IRModule with its signature.

    ``constants`` maps graph input names to values that are bound at build time (see
    :func:`bind_constants`); the recorded model hash is then that of the bound model.
    """
    if isinstance(path_or_model, onnx.ModelProto):
        model, origin = path_or_model, "<model>"
        data = model.SerializeToString()
        model = parse(data, origin)
    else:
        origin = os.fspath(path_or_model)
        data = read_model_file(origin)
        model = parse(data, origin)
    if constants:
        model = bind_constants(model, constants)
        data = model.SerializeToString()
    pin_inputs(model, inputs or {})
    model = onnx_simplify.simplify(model)
    from edgec.frontend.onnx_ops.int4 import widen_int4_initializers

    model = widen_int4_initializers(model)
    bad = unsupported_operators(model)
    if bad:
        raise UnsupportedOperatorError(bad)
    input_specs = [_value_spec(i, i.name) for i in graph_inputs(model)]
    output_specs = [_value_spec(o, o.name) for o in model.graph.output]
    mod = convert(model, origin)
    return ImportedModel(mod, input_specs, output_specs, source_bytes=data, source_format="onnx")


def convert(model: onnx.ModelProto, origin: str = "<model>"):
    """Run TVM's ONNX importer (with our converters added); failures become CompileError."""
    from edgec.frontend import onnx_converters

    try:
        with warnings.catch_warnings(), onnx_converters.installed():
            warnings.simplefilter("ignore")
            return onnx_converters.from_onnx(model)
    except EdgecError:  # our converters' own one-line errors about the model
        raise
    except Exception as err:  # TVM raises many exception types; the user gets one line
        raise CompileError(f"TVM's ONNX importer failed on {origin}: {_short(err)}") from err


def _short(err: BaseException) -> str:
    lines = [ln.strip() for ln in str(err).strip().splitlines() if ln.strip()]
    if not lines:
        return type(err).__name__
    # TVM errors end with the message after a C++ backtrace; take the most specific line
    for line in reversed(lines):
        if "Error" in line or "error" in line or line == lines[-1]:
            return line[:400]
    return lines[-1][:400]
