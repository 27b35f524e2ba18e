"""Rewrite NVIDIA libspconv-style ONNX graphs into edgec-domain sparse ops, before checking.

libspconv graphs (Lidar_AI_Solution's exporter) hold ``SparseConvolution`` nodes in the default
domain, whose only tensor input is the features; the voxel coordinates live outside the graph,
and ``rulebook`` names tie an inverse conv to the strided conv it undoes. ``ScatterDense`` makes
the dense BEV tensor, and ``Reshape``/``Transpose`` carry their parameters in a ``dims``
attribute. ONNX's checker refuses all of that, so the graph is rewritten first:

* the model gains an int32 input ``coords`` [N, 4], the voxel indices exactly as libspconv takes
  them: (batch, then the spatial axes in the order of ``input_spatial_shape`` and of the kernel
  axes) — (batch, z, y, x) for the usual exports. N becomes symbolic (``num_voxels``).
* weights [Cout, kD, kH, kW, Cin] become [kD, kH, kW, Cin, Cout]; our op is axis-agnostic, so
  kernel axis i pairs with coordinate column i + 1 as in libspconv.
* ``activation="ReLU"`` becomes the fused ReLU epilogue; ``transposed=1`` is refused.
* ``ScatterDense`` becomes ``SparseToDense`` (dense axes in coordinate-column order).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from edgec.errors import ModelError

COORDS = "coords"
NUM_VOXELS = "num_voxels"
# ops that keep the sparse tensor's rows: their output has the input's coordinates
_ROWWISE = {"Relu", "Add", "Sub", "Mul", "Sigmoid", "Clip", "LeakyRelu", "Identity", "Cast", "BatchNormalization",
            "Tanh", "HardSigmoid", "HardSwish", "Div"}


def is_libspconv(model: onnx.ModelProto) -> bool:
    return any(n.op_type == "SparseConvolution" and n.domain in ("", "ai.onnx") for n in model.graph.node)


def _attrs(node) -> dict:
    out = {}
    for a in node.attribute:
        value = helper.get_attribute_value(a)
        out[a.name] = value.decode() if isinstance(value, bytes) else value
    return out


def _triple(value, name, where):
    value = [int(v) for v in (value if isinstance(value, (list, tuple)) else [value] * 3)]
    if len(value) != 3:
        raise ModelError(f"{where}: {name}={value} must have 3 values (only ndim=3 is supported)")
    return value


def rewrite_libspconv(model: onnx.ModelProto, origin: str = "<model>") -> onnx.ModelProto:
    """A copy of ``model`` with its libspconv nodes as edgec ops; other models come back unchanged."""
    if not is_libspconv(model):
        return model
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    inits = {t.name: t for t in graph.initializer}
    coords_of: dict[str, str] = {}
    rulebooks: dict[str, str] = {}  # rulebook -> coordinates of the strided conv's input
    nodes = []
    for node in graph.node:
        where = f"{origin}: {node.op_type} '{node.name}'"
        a = _attrs(node)
        if node.op_type == "SparseConvolution":
            nodes.extend(_conv(node, a, where, graph, inits, coords_of, rulebooks))
        elif node.op_type == "ScatterDense":
            x = node.input[0]
            if x not in coords_of:
                coords_of[x] = _sparse_input(graph, x, where)
            shape = [int(v) for v in a.get("output_shape", [])]
            spatial = _triple(a.get("input_spatial_shape"), "input_spatial_shape", where)
            if len(shape) != 5:
                raise ModelError(f"{where}: output_shape {shape} is not [B, C, D0, D1, D2]")
            nodes.append(helper.make_node("SparseToDense", [x, coords_of[x]], list(node.output), node.name,
                                          domain="edgec", spatial_shape=spatial, batch_size=shape[0]))
        elif node.op_type in ("Reshape", "Transpose") and "dims" in a and len(node.input) == 1:
            dims = [int(v) for v in a["dims"]]
            if node.op_type == "Transpose":
                nodes.append(helper.make_node("Transpose", list(node.input), list(node.output), node.name, perm=dims))
            else:
                shape_name = f"{node.name or node.output[0]}__shape"
                graph.initializer.append(numpy_helper.from_array(np.array(dims, np.int64), shape_name))
                nodes.append(helper.make_node("Reshape", [node.input[0], shape_name], list(node.output), node.name))
        else:
            if node.op_type in _ROWWISE and node.input and node.input[0] in coords_of:
                for o in node.output:
                    coords_of[o] = coords_of[node.input[0]]
            nodes.append(node)
    del graph.node[:]
    graph.node.extend(nodes)
    # sparse tensors' row counts are data-dependent: drop stale static shapes
    sparse = set(coords_of)
    kept = [v for v in graph.value_info if v.name not in sparse]
    del graph.value_info[:]
    graph.value_info.extend(kept)
    for v in graph.output:
        if v.name in sparse and v.type.tensor_type.shape.dim:
            v.type.tensor_type.shape.dim[0].dim_param = f"{v.name}_rows"
    if not any(o.domain == "edgec" for o in out.opset_import):
        out.opset_import.append(helper.make_opsetid("edgec", 1))
    return out


def _sparse_input(graph, name: str, where: str) -> str:
    """The graph input ``name`` is the voxel features: give it (and the new coords input) N rows."""
    for value in graph.input:
        if value.name == name:
            dims = value.type.tensor_type.shape.dim
            if len(dims) != 2:
                raise ModelError(f"{where}: the sparse input {name!r} must be [N, C]")
            dims[0].dim_param = NUM_VOXELS
            if not any(v.name == COORDS for v in graph.input):
                graph.input.append(helper.make_tensor_value_info(COORDS, onnx.TensorProto.INT32, [NUM_VOXELS, 4]))
            return COORDS
    raise ModelError(f"{where}: input {name!r} is neither a graph input nor a sparse tensor")


def _conv(node, a, where, graph, inits, coords_of, rulebooks):
    if int(a.get("ndim", 3)) != 3:
        raise ModelError(f"{where}: ndim={a.get('ndim')} is not supported (only 3)")
    if int(a.get("transposed", 0)):
        raise ModelError(f"{where}: transposed convolution is not supported (use inverse=1)")
    if any(int(v) for v in a.get("output_padding", [0, 0, 0])):
        raise ModelError(f"{where}: output_padding={list(a['output_padding'])} is not supported")
    if int(a.get("groups", 1)) != 1:
        raise ModelError(f"{where}: groups={a.get('groups')} is not supported")
    x = node.input[0]
    if x not in coords_of:
        coords_of[x] = _sparse_input(graph, x, where)
    coords = coords_of[x]
    subm, inverse = int(a.get("subm", 0)), int(a.get("inverse", 0))
    rulebook = str(a.get("rulebook", ""))
    kernel = _triple(a.get("kernel_size"), "kernel_size", where)
    extra, out = [], []
    w = node.input[1]
    w_new = f"{w}__kxyz_io"
    if w in inits:
        arr = numpy_helper.to_array(inits[w])
        if arr.ndim != 5 or list(arr.shape[1:4]) != kernel:
            raise ModelError(f"{where}: weight shape {list(arr.shape)} is not [Cout, {kernel}, Cin]")
        if w_new not in inits:
            t = numpy_helper.from_array(np.ascontiguousarray(arr.transpose(1, 2, 3, 4, 0)), w_new)
            graph.initializer.append(t)
            inits[w_new] = t
    else:
        extra.append(helper.make_node("Transpose", [w], [w_new], f"{node.name}__weight", perm=[1, 2, 3, 4, 0]))
    inputs = [x, coords, w_new, node.input[2] if len(node.input) > 2 else ""]
    attrs = dict(kernel_size=kernel, stride=_triple(a.get("stride", 1), "stride", where),
                 dilation=_triple(a.get("dilation", 1), "dilation", where),
                 padding=_triple(a.get("padding", 0), "padding", where), subm=subm, inverse=inverse,
                 activation=str(a.get("activation", "None")))
    y = node.output[0]
    if inverse:
        if rulebook not in rulebooks:
            raise ModelError(f"{where}: inverse conv's rulebook {rulebook!r} names no earlier strided conv")
        inputs.append(rulebooks[rulebook])
        coords_of[y] = rulebooks[rulebook]
    elif subm:
        coords_of[y] = coords
    else:
        if "input_spatial_shape" in a:
            attrs["spatial_shape"] = _triple(a["input_spatial_shape"], "input_spatial_shape", where)
        if rulebook:
            rulebooks[rulebook] = coords
        coords_of[y] = f"{y}__coords"
    out = [y, coords_of[y] if not (inverse or subm) else f"{y}__coords"]
    return extra + [helper.make_node("SparseConv3d", inputs, out, node.name, domain="edgec", **attrs)]
