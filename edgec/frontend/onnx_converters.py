"""Our ONNX converters, added to TVM's Relax ONNX importer.

TVM's importer looks converters up by op type in ``_get_convert_map()``. We extend that map for
the duration of one import (:func:`installed`), so stock TVM is never modified globally. A
converter is an ``OnnxOpConverter`` subclass with ``_impl_vN`` classmethods, as in TVM.

Registering an op twice raises: two converters for one op would silently shadow each other.
"""

from __future__ import annotations

import contextlib
import threading

from tvm.relax.frontend.onnx import onnx_frontend as _tvm_onnx

OnnxOpConverter = _tvm_onnx.OnnxOpConverter

# (domain, op_type) -> converter class; domain "" is the default ONNX domain
_CONVERTERS: dict[tuple[str, str], type] = {}
_STOCK_MAP = _tvm_onnx._get_convert_map
_LOCK = threading.Lock()
# Handled by TVM's importer outside the converter map.
_HANDLED_DIRECTLY = {("", "If"), ("", "Constant")}


def register(op_type: str, domain: str = ""):
    """Class decorator: make ``cls`` the converter for ``domain::op_type``."""

    def wrap(cls):
        key = (domain, op_type)
        if key in _CONVERTERS:
            raise ValueError(f"an ONNX converter for {domain or 'ai.onnx'}::{op_type} is already registered")
        _CONVERTERS[key] = cls
        return cls

    return wrap


def supported_ops() -> set[tuple[str, str]]:
    stock = {("", op) for op in _STOCK_MAP()}
    return stock | set(_CONVERTERS) | _HANDLED_DIRECTLY


def _merged_map():
    merged = dict(_STOCK_MAP())
    # TVM keys converters by op type alone; ours override stock ones of the same name
    merged.update({op: cls for (_, op), cls in _CONVERTERS.items()})
    return merged


_STOCK_CONVERT = _tvm_onnx.ONNXGraphImporter._convert_operator


def _convert_node(self, op_name, inputs, attrs, opset):
    """TVM's per-node conversion, reporting the node first and checking what it computes after."""
    from edgec import progress
    from edgec.errors import ModelError
    from edgec.frontend import check_size

    name = (attrs.get("tvm_custom") or {}).get("name") or "<unnamed>"
    progress.stage(f"import: node {name!r} ({op_name})")
    try:
        result = _STOCK_CONVERT(self, op_name, inputs, attrs, opset)
    except ModelError as err:  # a converter's finding about this node: say which node
        if str(err).startswith("node "):
            raise
        raise type(err)(f"node {name!r} ({op_name}): {err}") from None
    for value in (result if isinstance(result, (list, tuple)) else [result]):
        check_size(getattr(value, "ty", None), f"node {name!r} ({op_name})")
    return result


@contextlib.contextmanager
def installed():
    with _LOCK:
        _tvm_onnx._get_convert_map = _merged_map
        _tvm_onnx.ONNXGraphImporter._convert_operator = _convert_node
        try:
            yield
        finally:
            _tvm_onnx._get_convert_map = _STOCK_MAP
            _tvm_onnx.ONNXGraphImporter._convert_operator = _STOCK_CONVERT


def from_onnx(model):
    return _tvm_onnx.from_onnx(model)


def _load_builtin_converters():
    """Import the modules that hold our converters so that they register themselves."""
    from edgec.frontend import onnx_ops  # noqa: F401


_load_builtin_converters()
