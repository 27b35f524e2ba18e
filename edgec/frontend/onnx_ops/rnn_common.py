"""What the LSTM and GRU converters share: attribute checks, per-direction weight slicing, and
packing per-direction results into ONNX's output layouts."""

from __future__ import annotations

import tvm
from tvm import relax

from edgec.errors import UnsupportedAttributeError

from edgec.frontend.onnx_ops.recurrence import on_one_gpu_thread


def add_kernel(bb, func, name: str):
    """Add a recurrence kernel, launched on the device when converting under a GPU target.

    The converter sees the target only when the caller imports inside ``with target:``; without
    one, the kernel is host code.
    """
    target = tvm.target.Target.current(allow_none=True)
    if target is not None and "gpu" in list(target.keys):
        func, name = on_one_gpu_thread(func), name + "_gpu"
    return bb.add_func(func, name)


def node_name(attr) -> str:
    return attr.get("tvm_custom", {}).get("name", "") or "<unnamed>"


def text(value, default: str) -> str:
    if value is None:
        return default
    return value.decode() if isinstance(value, bytes) else str(value)


def check_attrs(op: str, attr, default_activations: list[str], num_dirs: int) -> None:
    """Refuse what the kernels do not implement, naming the node and the value."""
    name = node_name(attr)
    acts = [text(a, "") for a in attr.get("activations", ())]
    if acts and [a.lower() for a in acts] != [a.lower() for a in default_activations * num_dirs]:
        raise UnsupportedAttributeError(
            f"{op} node '{name}': activations {acts} are not supported, only {default_activations}"
        )
    if attr.get("input_forget", 0):
        raise UnsupportedAttributeError(f"{op} node '{name}': input_forget=1 is not supported")


def directions(attr, op: str) -> list[bool]:
    """One ``reverse`` flag per direction, in ONNX's order (forward first)."""
    direction = text(attr.get("direction"), "forward")
    flags = {"forward": [False], "reverse": [True], "bidirectional": [False, True]}
    if direction not in flags:
        raise ValueError(f"{op} node '{node_name(attr)}': unknown direction {direction!r}")
    return flags[direction]


def sequence_first(bb, x, layout: int):
    """ONNX layout 1 is (batch, seq, feature); the kernels want (seq, batch, feature)."""
    return bb.normalize(relax.op.permute_dims(x, [1, 0, 2])) if layout else x


def dims(x, op: str, attr) -> tuple:
    shape = x.ty.shape
    if shape is None or not hasattr(shape, "values") or len(shape.values) != 3:
        raise ValueError(f"{op} node '{node_name(attr)}': input X needs a known rank-3 shape, has {x.ty}")
    if x.ty.dtype != "float32":
        raise UnsupportedAttributeError(f"{op} node '{node_name(attr)}': only float32 is supported, X is {x.ty.dtype}")
    return tuple(shape.values)


def direction_slice(bb, tensor, d: int, axis: int = 0):
    """``tensor[d]`` along the direction axis, or ``None`` when the input is absent."""
    if tensor is None:
        return None
    return bb.normalize(relax.op.take(tensor, relax.const(d, "int64"), axis=axis))


def initial_state(bb, state, d: int, batch, hidden: int, layout: int):
    """Direction ``d`` of an initial state: (dirs, batch, H), or (batch, dirs, H) in layout 1."""
    if state is None:
        return bb.normalize(relax.op.zeros(relax.ShapeExpr([batch, hidden]), "float32"))
    return direction_slice(bb, state, d, axis=1 if layout else 0)


def input_projection(bb, x, w_d, bias):
    """``X·Wᵀ (+ bias)`` for every step at once: (seq, batch, gates)."""
    xw = relax.op.matmul(x, relax.op.permute_dims(w_d, [1, 0]))
    return bb.normalize(xw if bias is None else relax.op.add(xw, bias))


def pack_outputs(bb, ys: list, finals: list[list], layout: int):
    """Stack per-direction results: Y (seq, dirs, batch, H) and each final state (dirs, batch, H)."""
    y = relax.op.concat([relax.op.expand_dims(v, 1) for v in ys], axis=1)
    states = [relax.op.concat([relax.op.expand_dims(v, 0) for v in per_dir], axis=0) for per_dir in zip(*finals)]
    if layout:
        y = relax.op.permute_dims(y, [2, 0, 1, 3])
        states = [relax.op.permute_dims(s, [1, 0, 2]) for s in states]
    return relax.Tuple([bb.normalize(y)] + [bb.normalize(s) for s in states])


def reject_sequence_lens(op: str, attr, seq_lens) -> None:
    if seq_lens is not None:
        raise UnsupportedAttributeError(
            f"{op} node '{node_name(attr)}': the sequence_lens input (packed sequences) is not supported"
        )
