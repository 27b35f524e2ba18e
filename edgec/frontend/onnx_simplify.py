"""Simplify an ONNX graph before conversion: infer shapes, then fold what only computes constants.

Exported models often compute the target of a Reshape from ``Shape → Gather → Concat`` chains.
Once the input dims are pinned, those chains are constants; folding them gives TVM's importer
static shapes (it refuses a Reshape whose shape is a computed tensor). Folding runs one node at a
time with ONNX's reference evaluator, so the values are ONNX's own semantics.
"""

from __future__ import annotations

import logging

import numpy as np
import onnx
from onnx import numpy_helper, shape_inference

logger = logging.getLogger(__name__)

# Never folded: random values must stay random, and these produce or consume sequences/optionals.
_NOT_FOLDABLE = {
    "RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike", "Multinomial",
    "Bernoulli", "If", "Loop", "Scan", "SequenceConstruct", "SequenceEmpty", "SequenceAt",
    "SequenceInsert", "SequenceErase", "SequenceLength", "SplitToSequence", "ConcatFromSequence",
    "Optional", "OptionalGetElement", "OptionalHasElement",
}
# Folding must not blow weights up: a folded value may be at most this large, unless it is no
# larger than the biggest constant it was computed from (a weight transpose, say).
_MAX_NEW_CONSTANT_BYTES = 1 << 20
_MAX_ROUNDS = 8


def simplify(model: onnx.ModelProto) -> onnx.ModelProto:
    """Return a copy with shape-only and constant-only subgraphs folded into initializers."""
    model = _copy(model)
    for _ in range(_MAX_ROUNDS):
        model = _infer(model)
        changed = _fold_once(model)
        changed = _drop_identity_casts(model) or changed
        changed = _inline_constant_ifs(model) or changed
        if not changed:
            break
    _remove_dead_nodes(model)
    model = _infer(model)
    # after the last inference: ONNX's opset-11 Resize schema requires the inputs this removes
    if _drop_empty_resize_inputs(model):
        _remove_dead_nodes(model)
    return model


def _copy(model: onnx.ModelProto) -> onnx.ModelProto:
    out = onnx.ModelProto()
    out.CopyFrom(model)
    return out


def _infer(model: onnx.ModelProto) -> onnx.ModelProto:
    try:
        return shape_inference.infer_shapes(model, data_prop=True)
    except Exception as err:  # inference is an aid: a model it cannot handle still converts
        logger.debug("shape inference failed: %s", err)
        return model


def _static_shapes(model: onnx.ModelProto) -> dict[str, tuple[int, ...]]:
    shapes = {}
    for vi in list(model.graph.value_info) + list(model.graph.input) + list(model.graph.output):
        t = vi.type.tensor_type
        if not t.HasField("shape"):
            continue
        dims = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
        if all(d is not None for d in dims):
            shapes[vi.name] = tuple(dims)
    return shapes


def _fold_once(model: onnx.ModelProto) -> bool:
    graph = model.graph
    consts: dict[str, np.ndarray] = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    graph_inputs = {i.name for i in graph.input} - set(consts)
    shapes = _static_shapes(model)
    opsets = {o.domain or "": o.version for o in model.opset_import}
    folded_any = False
    keep = []
    for node in graph.node:
        values = _try_fold(node, consts, graph_inputs, shapes, opsets.get("", 1))
        if values is None:
            keep.append(node)
            continue
        for name, value in zip(node.output, values):
            if name:
                consts[name] = value
                graph.initializer.append(numpy_helper.from_array(value, name))
        folded_any = True
    if folded_any:
        del graph.node[:]
        graph.node.extend(keep)
        # values that were inferred for now-constant tensors are stale type info
        folded = {i.name for i in graph.initializer}
        stale = [vi for vi in graph.value_info if vi.name in folded]
        for vi in stale:
            graph.value_info.remove(vi)
    return folded_any


def _try_fold(node, consts, graph_inputs, shapes, opset) -> list[np.ndarray] | None:
    if node.domain not in ("", "ai.onnx") or node.op_type in _NOT_FOLDABLE:
        return None
    if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.attribute):
        return None
    if node.op_type == "DequantizeLinear" and any(a.name == "block_size" and a.i for a in node.attribute):
        return None  # a blocked (int4) weight stays quantized, for the fused int4 matmul
    if node.op_type == "Shape":
        shape = shapes.get(node.input[0])
        if shape is None:
            return None
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        start, end = attrs.get("start", 0), attrs.get("end", len(shape))
        return [np.array(shape[start:end] if end is not None else shape[start:], dtype=np.int64)]
    if node.op_type == "Size" and node.input[0] in shapes:
        return [np.array(int(np.prod(shapes[node.input[0]])), dtype=np.int64)]
    inputs = [i for i in node.input if i]
    if not inputs and node.op_type not in ("Constant", "ConstantOfShape", "Range", "EyeLike"):
        return None
    if any(i not in consts or i in graph_inputs for i in inputs):
        return None
    try:
        values = _evaluate(node, [consts.get(i) if i else None for i in node.input], opset)
    except Exception as err:  # the converter reports the real problem later, with context
        logger.debug("could not fold %s (%s): %s", node.name, node.op_type, err)
        return None
    largest_in = max((consts[i].nbytes for i in inputs), default=0)
    if any(v.nbytes > max(_MAX_NEW_CONSTANT_BYTES, largest_in) for v in values):
        return None
    return values


def _evaluate(node, inputs, opset) -> list[np.ndarray]:
    from onnx.reference import ReferenceEvaluator

    names = [f"in{i}" if name else "" for i, name in enumerate(node.input)]
    inner = onnx.helper.make_node(
        node.op_type, names, [f"out{i}" for i in range(len(node.output))], domain=node.domain
    )
    inner.attribute.extend(node.attribute)
    graph = onnx.helper.make_graph(
        [inner], "fold",
        [onnx.helper.make_tensor_value_info(n, onnx.TensorProto.UNDEFINED, None) for n in names if n],
        [onnx.helper.make_tensor_value_info(o, onnx.TensorProto.UNDEFINED, None) for o in inner.output],
    )
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", opset)])
    feeds = {n: v for n, v in zip(names, inputs) if n}
    return [np.asarray(v) for v in ReferenceEvaluator(model).run(None, feeds)]


def _elem_types(model: onnx.ModelProto) -> dict[str, int]:
    types = {i.name: i.data_type for i in model.graph.initializer}
    for vi in list(model.graph.value_info) + list(model.graph.input) + list(model.graph.output):
        if vi.type.HasField("tensor_type") and vi.type.tensor_type.elem_type:
            types[vi.name] = vi.type.tensor_type.elem_type
    return types


def _drop_identity_casts(model: onnx.ModelProto) -> bool:
    """Bypass ``Cast`` nodes whose input already has the target type.

    The TorchScript exporter casts computed ``Resize`` sizes from int64 to int64. TVM's importer
    turns such a Cast of a shape into a tensor, and then cannot concatenate it with the shape it
    belongs to; without the Cast the whole sizes chain stays a shape expression.
    """
    graph = model.graph
    types = _elem_types(model)
    outputs = {o.name for o in graph.output}
    rename = {}
    for node in graph.node:
        if node.op_type != "Cast" or node.domain not in ("", "ai.onnx") or node.output[0] in outputs:
            continue
        to = next((a.i for a in node.attribute if a.name == "to"), None)
        source = rename.get(node.input[0], node.input[0])
        if to is not None and types.get(node.input[0]) == to:
            rename[node.output[0]] = source
    if not rename:
        return False
    _rename_inputs(graph, rename)
    keep = [n for n in graph.node if not (n.op_type == "Cast" and n.output[0] in rename)]
    del graph.node[:]
    graph.node.extend(keep)
    return True


def _inline_constant_ifs(model: onnx.ModelProto) -> bool:
    """Replace an ``If`` whose condition folded to a constant by the branch it takes.

    Scripted exports branch on shapes (``if x.size(1) > n``); once dims are pinned the condition
    is known. TVM's importer would otherwise evaluate both branches and keep the whole function
    out of a dataflow block, which blocks fusion.
    """
    graph = model.graph
    consts = {i.name: i for i in graph.initializer}
    new_nodes, changed = [], False
    for node in graph.node:
        cond = consts.get(node.input[0]) if node.op_type == "If" and node.domain in ("", "ai.onnx") else None
        if cond is None:
            new_nodes.append(node)
            continue
        taken = bool(numpy_helper.to_array(cond).reshape(-1)[0])
        branch = next(a.g for a in node.attribute if a.name == ("then_branch" if taken else "else_branch"))
        graph.initializer.extend(branch.initializer)
        new_nodes.extend(branch.node)
        for inner, outer in zip(branch.output, node.output):
            new_nodes.append(onnx.helper.make_node("Identity", [inner.name], [outer], name=f"{node.name}/{outer}"))
        changed = True
    if changed:
        del graph.node[:]
        graph.node.extend(new_nodes)
    return changed


def _drop_empty_resize_inputs(model: onnx.ModelProto) -> bool:
    """Turn Resize's empty ``roi``/``scales`` placeholders into absent inputs.

    Exporters for opset 11/12 pass an empty tensor for ``scales`` when they give ``sizes``; TVM's
    importer takes any present tensor as scales and then refuses having both.
    """
    empty = {i.name for i in model.graph.initializer if int(np.prod(i.dims)) == 0 and len(i.dims) == 1}
    changed = False
    for node in model.graph.node:
        if node.op_type != "Resize" or node.domain not in ("", "ai.onnx"):
            continue
        for slot in (1, 2):
            if slot < len(node.input) and node.input[slot] in empty:
                node.input[slot] = ""
                changed = True
    return changed


def _rename_inputs(graph, rename: dict[str, str]) -> None:
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name in rename:
                node.input[i] = rename[name]
        for attr in node.attribute:  # branch bodies may read the renamed values
            for sub in ([attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs)):
                _rename_inputs(sub, rename)


def _remove_dead_nodes(model: onnx.ModelProto) -> None:
    graph = model.graph
    live = {o.name for o in graph.output}
    for node in graph.node:  # names read inside subgraphs keep outer values alive
        for attr in node.attribute:
            for sub in ([attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs)):
                live |= _names_read(sub)
    keep = []
    for node in reversed(graph.node):
        if any(o in live for o in node.output):
            keep.append(node)
            live.update(i for i in node.input if i)
    keep.reverse()
    if len(keep) != len(graph.node):
        del graph.node[:]
        graph.node.extend(keep)
    used = live | {i.name for i in graph.input}
    inits = [i for i in graph.initializer if i.name in used]
    if len(inits) != len(graph.initializer):
        del graph.initializer[:]
        graph.initializer.extend(inits)


def _names_read(graph) -> set[str]:
    names = set()
    for node in graph.node:
        names.update(i for i in node.input if i)
        for attr in node.attribute:
            for sub in ([attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs)):
                names |= _names_read(sub)
    return names
