"""Seed models and replayable mutations for the ONNX fuzzer.

A fuzz case is a seed name plus a list of mutation records (plain dicts). :func:`draw` draws the
records from a random generator; :func:`build` replays them on a fresh seed model, so a case is
reproduced, minimized (by dropping records) and kept as a regression from its JSON alone. A
record whose target no longer exists in the model is skipped, which keeps any subset replayable.
"""

from __future__ import annotations

import random

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

UNARY = ["Relu", "Sigmoid", "Tanh", "Abs", "Neg", "Exp", "Log", "Sqrt", "Softmax", "Identity", "Floor", "Ceil",
         "Erf", "HardSigmoid", "LeakyRelu", "Elu", "Reciprocal", "Sign", "Softplus", "Round"]
BINARY = ["Add", "Sub", "Mul", "Div", "Max", "Min", "Pow", "MatMul", "Equal", "Greater", "PRelu"]
DTYPES = [TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE, TensorProto.INT32, TensorProto.INT64,
          TensorProto.UINT8, TensorProto.BOOL]
INTS = [-3, -2, -1, 0, 1, 2, 3, 4, 7, 1 << 31]


def _vi(name, shape, dtype=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, dtype, shape)


def _w(rng, shape, name):
    return numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name)


def seeds() -> dict[str, onnx.ModelProto]:
    rng = np.random.default_rng(0)
    models = {}
    models["mlp"] = (
        [helper.make_node("Gemm", ["x", "w1", "b1"], ["h"], name="fc1", transB=1),
         helper.make_node("Relu", ["h"], ["r"], name="relu"),
         helper.make_node("MatMul", ["r", "w2"], ["y"], name="fc2")],
        [_vi("x", [2, 16])], [_vi("y", [2, 4])], [_w(rng, (32, 16), "w1"), _w(rng, (32,), "b1"), _w(rng, (32, 4), "w2")])
    models["cnn"] = (
        [helper.make_node("Conv", ["x", "cw", "cb"], ["c"], name="conv", pads=[1, 1, 1, 1], strides=[1, 1]),
         helper.make_node("BatchNormalization", ["c", "s", "b", "m", "v"], ["n"], name="bn"),
         helper.make_node("Relu", ["n"], ["r"], name="relu"),
         helper.make_node("MaxPool", ["r"], ["p"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
         helper.make_node("GlobalAveragePool", ["p"], ["g"], name="gap"),
         helper.make_node("Flatten", ["g"], ["y"], name="flatten")],
        [_vi("x", [1, 3, 8, 8])], [_vi("y", [1, 8])],
        [_w(rng, (8, 3, 3, 3), "cw"), _w(rng, (8,), "cb"), _w(rng, (8,), "s"), _w(rng, (8,), "b"), _w(rng, (8,), "m"),
         numpy_helper.from_array(rng.uniform(0.5, 2, 8).astype(np.float32), "v")])
    models["shapes"] = (
        [helper.make_node("Transpose", ["x"], ["t"], name="transpose", perm=[0, 2, 1]),
         helper.make_node("Reshape", ["t", "shape"], ["r"], name="reshape"),
         helper.make_node("Softmax", ["r"], ["s"], name="softmax", axis=-1),
         helper.make_node("Add", ["s", "bias"], ["a"], name="add"),
         helper.make_node("ReduceMean", ["a"], ["y"], name="mean", axes=[1], keepdims=1)],
        [_vi("x", [2, 3, 8])], [_vi("y", [2, 1, 12])],
        [numpy_helper.from_array(np.array([2, 2, 12], dtype=np.int64), "shape"), _w(rng, (12,), "bias")])
    models["concat"] = (
        [helper.make_node("Concat", ["a", "b"], ["c"], name="concat", axis=1),
         helper.make_node("Slice", ["c", "starts", "ends", "axes"], ["s"], name="slice"),
         helper.make_node("Mul", ["s", "s"], ["m"], name="square"),
         helper.make_node("Sigmoid", ["m"], ["g"], name="sigmoid"),
         helper.make_node("LayerNormalization", ["g", "gamma", "beta"], ["y"], name="ln", axis=-1)],
        [_vi("a", [2, 4, 6]), _vi("b", [2, 2, 6])], [_vi("y", [2, 5, 6])],
        [numpy_helper.from_array(np.array([1], dtype=np.int64), "starts"),
         numpy_helper.from_array(np.array([6], dtype=np.int64), "ends"),
         numpy_helper.from_array(np.array([1], dtype=np.int64), "axes"), _w(rng, (6,), "gamma"), _w(rng, (6,), "beta")])
    out = {}
    for name, (nodes, inputs, outputs, inits) in models.items():
        model = helper.make_model(helper.make_graph(nodes, name, inputs, outputs, inits),
                                  opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 10
        out[name] = model
    return out


def draw(rng: random.Random, model: onnx.ModelProto, count: int) -> list[dict]:
    """``count`` mutation records aimed at ``model`` (concrete values, so they replay exactly)."""
    records = []
    g = model.graph
    for _ in range(count):
        kind = rng.choice(["attr", "drop_attr", "dim", "dtype", "swap_op", "swap_inputs", "init_shape",
                           "insert", "opset", "bytes"])
        node = rng.randrange(len(g.node))
        if kind == "attr":
            records.append({"op": kind, "node": node, "index": rng.randrange(4), "value": rng.choice(INTS),
                            "position": rng.randrange(4)})
        elif kind == "drop_attr":
            records.append({"op": kind, "node": node, "index": rng.randrange(4)})
        elif kind == "dim":
            records.append({"op": kind, "input": rng.randrange(len(g.input)), "axis": rng.randrange(4),
                            "value": rng.choice([0, 1, 2, 3, 5, 17, "n"])})
        elif kind == "dtype":
            records.append({"op": kind, "input": rng.randrange(len(g.input)), "dtype": rng.choice(DTYPES)})
        elif kind == "swap_op":
            records.append({"op": kind, "node": node, "unary": rng.choice(UNARY), "binary": rng.choice(BINARY)})
        elif kind == "swap_inputs":
            records.append({"op": kind, "node": node})
        elif kind == "init_shape":
            records.append({"op": kind, "init": rng.randrange(max(1, len(g.initializer))), "axis": rng.randrange(3),
                            "delta": rng.choice([-1, 1, 2]), "seed": rng.randrange(1 << 16)})
        elif kind == "insert":
            records.append({"op": kind, "node": node, "what": rng.choice(UNARY + ["Transpose", "Reshape", "Cast",
                                                                                  "ReduceSum", "Flatten", "Softmax"]),
                            "value": rng.choice(INTS), "dtype": rng.choice(DTYPES)})
        elif kind == "opset":
            records.append({"op": kind, "version": rng.randint(7, 22)})
        else:
            records.append({"op": kind, "flips": [[rng.randrange(1 << 20), rng.randrange(1, 256)]
                                                  for _ in range(rng.randint(1, 4))]})
    return records


def build(seed: str, records: list[dict]) -> bytes:
    """The serialized model: ``seed`` with ``records`` applied in order."""
    model = seeds()[seed]
    flips = []
    for record in records:
        if record["op"] == "bytes":
            flips.extend(record["flips"])
        else:
            _apply(model, record)
    data = bytearray(model.SerializeToString())
    for position, xor in flips:
        data[position % len(data)] ^= xor
    return bytes(data)


def _apply(model: onnx.ModelProto, r: dict) -> None:
    g = model.graph
    op = r["op"]
    node = g.node[r["node"] % len(g.node)] if "node" in r and len(g.node) else None
    if op == "attr" and node is not None and node.attribute:
        attr = node.attribute[r["index"] % len(node.attribute)]
        if attr.type == onnx.AttributeProto.INT:
            attr.i = r["value"]
        elif attr.type == onnx.AttributeProto.INTS and attr.ints:
            attr.ints[r["position"] % len(attr.ints)] = r["value"]
        elif attr.type == onnx.AttributeProto.FLOAT:
            attr.f = float(r["value"])
    elif op == "drop_attr" and node is not None and node.attribute:
        del node.attribute[r["index"] % len(node.attribute)]
    elif op == "dim" and g.input:
        dims = g.input[r["input"] % len(g.input)].type.tensor_type.shape.dim
        if dims:
            dim = dims[r["axis"] % len(dims)]
            if r["value"] == "n":
                dim.dim_param = "n"
            else:
                dim.dim_value = r["value"]
    elif op == "dtype" and g.input:
        g.input[r["input"] % len(g.input)].type.tensor_type.elem_type = r["dtype"]
    elif op == "swap_op" and node is not None:
        node.op_type = r["unary"] if len(node.input) == 1 else r["binary"] if len(node.input) == 2 else node.op_type
        del node.attribute[:]
    elif op == "swap_inputs" and node is not None and len(node.input) > 1:
        inputs = list(node.input)[::-1]
        del node.input[:]
        node.input.extend(inputs)
    elif op == "init_shape" and g.initializer:
        index = r["init"] % len(g.initializer)
        old = g.initializer[index]
        shape = list(old.dims) or [1]
        axis = r["axis"] % len(shape)
        shape[axis] = max(0, shape[axis] + r["delta"])
        values = np.random.default_rng(r["seed"]).standard_normal(shape)
        dtype = onnx.helper.tensor_dtype_to_np_dtype(old.data_type)
        g.initializer[index].CopyFrom(numpy_helper.from_array(values.astype(dtype), old.name))
    elif op == "insert" and node is not None and node.output:
        _insert_after(model, node, r)
    elif op == "opset":
        for opset in model.opset_import:
            if opset.domain in ("", "ai.onnx"):
                opset.version = r["version"]


def _insert_after(model: onnx.ModelProto, node, r: dict) -> None:
    """Put one node on ``node``'s first output edge."""
    g = model.graph
    old = node.output[0]
    new = f"{old}_fz{len(g.node)}"
    node.output[0] = new
    what, extra = r["what"], {}
    inputs = [new]
    if what == "Transpose":
        extra["perm"] = [abs(r["value"]) % 3, 1, 0] if r["value"] % 2 else [0]
    elif what == "Reshape":
        shape_name = f"{new}_shape"
        g.initializer.append(numpy_helper.from_array(np.array([r["value"] if r["value"] < 1000 else -1, -1],
                                                              dtype=np.int64), shape_name))
        inputs.append(shape_name)
    elif what == "Cast":
        extra["to"] = r["dtype"]
    elif what in ("ReduceSum", "Flatten", "Softmax"):
        extra["axis" if what != "ReduceSum" else "keepdims"] = r["value"] if what != "ReduceSum" else 1
    inserted = helper.make_node(what, inputs, [old], name=f"fz{len(g.node)}", **extra)
    position = list(g.node).index(node) + 1
    g.node.insert(position, inserted)
