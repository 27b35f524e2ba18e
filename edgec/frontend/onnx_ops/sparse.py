"""Converters for the ``edgec`` ONNX domain's sparse operators (version 1).

``SparseConv3d``, ``SparseToDense`` and ``Voxelize`` map one to one onto the emitters in
``edgec.passes.sparse_conv.ops``. Besides the attributes the operators define, SparseConv3d
reads four edgec extensions: ``max_points`` (the declared maximum N, default 2^20),
``dataflow`` ("implicit_gemm" / "gather_scatter"), ``kernel_map`` ("hash" / "sort"; default:
hash on CPUs, sort on GPUs) and ``activation`` ("ReLU" fuses a ReLU epilogue; the libspconv
rewrite sets it).
NVIDIA libspconv graphs are rewritten into these ops before checking (``libspconv.py``).
"""

from __future__ import annotations

from edgec.frontend.onnx_converters import OnnxOpConverter, register
from edgec.passes.sparse_conv.ops import (DEFAULT_MAX_POINTS, SparseConvAttrs, SparseError, emit_sparse_conv3d,
                                          emit_sparse_to_dense, emit_voxelize)
from tvm import relax


def _name(attr) -> str:
    return attr.get("tvm_custom", {}).get("name", "") or ""


def _text(value, default: str) -> str:
    if value is None:
        return default
    return value.decode() if isinstance(value, bytes) else str(value)


def _ints(attr, key, where, default=None):
    value = attr.get(key, default)
    if value is None:
        raise SparseError(f"{where}: attribute {key} is required")
    value = tuple(int(v) for v in (value if isinstance(value, (tuple, list)) else (value,) * 3))
    if len(value) != 3:
        raise SparseError(f"{where}: attribute {key}={list(value)} must have 3 values")
    return value


def conv_attrs(attr: dict, where: str) -> SparseConvAttrs:
    activation = _text(attr.get("activation"), "None")
    if activation not in ("None", "ReLU", "Relu", "relu"):
        raise SparseError(f"{where}: activation {activation!r} is not supported (None or ReLU)")
    return SparseConvAttrs(
        kernel_size=_ints(attr, "kernel_size", where),
        stride=_ints(attr, "stride", where, 1),
        dilation=_ints(attr, "dilation", where, 1),
        padding=_ints(attr, "padding", where, 0),
        subm=bool(attr.get("subm", 0)),
        inverse=bool(attr.get("inverse", 0)),
        spatial_shape=_ints(attr, "spatial_shape", where) if "spatial_shape" in attr else None,
        relu=activation != "None",
        dataflow=_text(attr.get("dataflow"), "auto"),
        kernel_map=_text(attr.get("kernel_map"), "auto"),
        max_points=int(attr.get("max_points", DEFAULT_MAX_POINTS)),
        name=_name(attr),
    )


@register("SparseConv3d", "edgec")
class SparseConv3d(OnnxOpConverter):
    @classmethod
    def _impl_v1(cls, bb, inputs, attr, params):
        where = f"SparseConv3d '{_name(attr)}'"
        attrs = conv_attrs(attr, where)
        inputs = list(inputs) + [None] * (5 - len(inputs))
        feats, coords, weight, bias, out_coords = inputs[:5]
        if feats is None or coords is None or weight is None:
            raise SparseError(f"{where}: feats, coords and weight are required inputs")
        if out_coords is not None and not attrs.inverse:
            raise SparseError(f"{where}: out_coords is only an input when inverse=1")
        out, out_c = emit_sparse_conv3d(bb, feats, coords, weight, bias, out_coords, attrs)
        return relax.Tuple([out, out_c])


@register("SparseToDense", "edgec")
class SparseToDense(OnnxOpConverter):
    @classmethod
    def _impl_v1(cls, bb, inputs, attr, params):
        where = f"SparseToDense '{_name(attr)}'"
        if "batch_size" not in attr:
            raise SparseError(f"{where}: attribute batch_size is required")
        return emit_sparse_to_dense(bb, inputs[0], inputs[1], _ints(attr, "spatial_shape", where),
                                    int(attr["batch_size"]))


@register("Voxelize", "edgec")
class Voxelize(OnnxOpConverter):
    @classmethod
    def _impl_v1(cls, bb, inputs, attr, params):
        where = f"Voxelize '{_name(attr)}'"
        for key in ("voxel_size", "point_range", "max_voxels"):
            if key not in attr:
                raise SparseError(f"{where}: attribute {key} is required")
        feats, coords = emit_voxelize(bb, inputs[0], attr["voxel_size"], attr["point_range"], attr["max_voxels"])
        return relax.Tuple([feats, coords])
