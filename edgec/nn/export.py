"""Export modules built from edgec.nn to ONNX, each sparse layer as one ``edgec``-domain node.

The route is TorchScript tracing (``torch.onnx.export(dynamo=False)``) with symbolic functions for
the ``edgec::*`` custom ops: the tracer runs the ops eagerly, so their data-dependent row counts
need no shape rules. Afterwards the row dimensions the tracer froze at the example's sizes are
made symbolic again, missing trailing optional inputs are dropped, and the IR version is pinned.
"""

from __future__ import annotations

import os
import warnings

import onnx
import torch
from torch.onnx import register_custom_op_symbolic
from torch.onnx import symbolic_helper as sh

from edgec.errors import CompileError

DOMAIN = "edgec"
_OPSET = 17


def _ints(v):
    return [int(x) for x in sh._maybe_get_const(v, "is")]


def _flag(v) -> int:
    return int(bool(sh._maybe_get_const(v, "b")))


def _optional(g, v):
    return sh._optional_input_placeholder_tensor(g) if sh._is_none(v) else v


def _sparse_conv3d(g, feats, coords, weight, bias, out_coords, kernel_size, stride, dilation, padding, subm,
                   inverse, spatial_shape):
    attrs = dict(kernel_size_i=_ints(kernel_size), stride_i=_ints(stride), dilation_i=_ints(dilation),
                 padding_i=_ints(padding), subm_i=_flag(subm), inverse_i=_flag(inverse))
    if not sh._is_none(spatial_shape):
        attrs["spatial_shape_i"] = _ints(spatial_shape)
    return g.op(f"{DOMAIN}::SparseConv3d", feats, coords, weight, _optional(g, bias), _optional(g, out_coords),
                outputs=2, **attrs)


def _sparse_to_dense(g, feats, coords, spatial_shape, batch_size):
    return g.op(f"{DOMAIN}::SparseToDense", feats, coords, spatial_shape_i=_ints(spatial_shape),
                batch_size_i=int(sh._maybe_get_const(batch_size, "i")))


def _voxelize(g, points, voxel_size, point_range, max_voxels):
    return g.op(f"{DOMAIN}::Voxelize", points, voxel_size_f=[float(v) for v in sh._maybe_get_const(voxel_size, "fs")],
                point_range_f=[float(v) for v in sh._maybe_get_const(point_range, "fs")],
                max_voxels_i=int(sh._maybe_get_const(max_voxels, "i")), outputs=2)


_registered = False


def _register() -> None:
    global _registered
    if not _registered:
        register_custom_op_symbolic("edgec::sparse_conv3d", _sparse_conv3d, 9)
        register_custom_op_symbolic("edgec::sparse_to_dense", _sparse_to_dense, 9)
        register_custom_op_symbolic("edgec::voxelize", _voxelize, 9)
        _registered = True


def export_onnx(module: torch.nn.Module, example_inputs, path, *, input_names=None, output_names=None,
                dynamic_axes=None, opset_version: int = _OPSET) -> onnx.ModelProto:
    """Export ``module`` called on ``example_inputs`` (a tuple) to ``path``; returns the saved model.

    By default every input's first axis is dynamic, shared as "N" (feats and coords of one sparse
    tensor, or one points tensor), and every rank-2 output's first axis is a fresh symbol
    (sparse row counts depend on the data).
    """
    _register()
    if not isinstance(example_inputs, tuple):
        example_inputs = (example_inputs,)
    if input_names is None:
        import inspect

        params = list(inspect.signature(module.forward).parameters)
        input_names = params[:len(example_inputs)]
    if dynamic_axes is None:
        dynamic_axes = {n: {0: "N"} for n in input_names}
    was_training = module.training
    module.eval()
    try:
        with warnings.catch_warnings():
            # the TorchScript route is deprecated, but the dynamo route needs onnxscript and
            # a translation per custom op
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(module, example_inputs, os.fspath(path), dynamo=False, opset_version=opset_version,
                              input_names=list(input_names), output_names=output_names,
                              dynamic_axes=dynamic_axes)
    except Exception as err:
        first = next((ln for ln in str(err).splitlines() if ln.strip()), type(err).__name__)
        raise CompileError(f"ONNX export of {type(module).__name__} failed: {first[:300]}") from err
    finally:
        module.train(was_training)
    model = onnx.load(os.fspath(path))
    if output_names is None:
        _name_outputs(model)
    _tidy(model, dynamic_axes)
    onnx.save(model, os.fspath(path))
    return model


def _name_outputs(model: onnx.ModelProto) -> None:
    """Name the outputs as the torch frontend does ("output", or "output0", "output1", ...), not
    by the tracer's value numbers."""
    outs = model.graph.output
    rename = {o.name: ("output" if len(outs) == 1 else f"output{i}") for i, o in enumerate(outs)}
    taken = {v for n in model.graph.node for v in n.output} | {i.name for i in model.graph.input}
    inputs = {i.name for i in model.graph.input} | {t.name for t in model.graph.initializer}
    if (len(rename) != len(outs) or any(old in inputs for old in rename)
            or any(new in taken and new not in rename for new in rename.values())):
        return  # an output repeats, is an input, or its new name is taken: keep the tracer's names
    for node in model.graph.node:
        node.output[:] = [rename.get(v, v) for v in node.output]
        node.input[:] = [rename.get(v, v) for v in node.input]
    for o in outs:
        o.name = rename[o.name]


def _tidy(model: onnx.ModelProto, dynamic_axes: dict) -> None:
    for node in model.graph.node:
        if node.domain == DOMAIN:
            while node.input and node.input[-1] == "":
                node.input.pop()
    # shapes the tracer recorded past a sparse op are the example's; let importers infer them
    del model.graph.value_info[:]
    widths = _sparse_widths(model)
    for i, out in enumerate(model.graph.output):
        dims = out.type.tensor_type.shape.dim
        fixed = dynamic_axes.get(out.name, {})
        if len(dims) == 2 and 0 not in fixed:
            dims[0].Clear()
            dims[0].dim_param = f"rows{i}"
        if len(dims) == 2 and out.name in widths:
            dims[1].Clear()
            dims[1].dim_value = widths[out.name]
    model.ir_version = 10


def _sparse_widths(model: onnx.ModelProto) -> dict[str, int]:
    """Column counts of the edgec ops' [rows, C] outputs that are known statically."""
    weights = {t.name: list(t.dims) for t in model.graph.initializer}
    inputs = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in model.graph.input}
    widths = {}
    for node in model.graph.node:
        if node.domain != DOMAIN or node.op_type == "SparseToDense":
            continue
        widths[node.output[1]] = 4
        if node.op_type == "SparseConv3d" and node.input[2] in weights:
            widths[node.output[0]] = weights[node.input[2]][4]
        elif node.op_type == "Voxelize" and inputs.get(node.input[0], [0, 0])[1]:
            widths[node.output[0]] = inputs[node.input[0]][1]
    return widths
