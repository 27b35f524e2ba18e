"""Write the two tiny ONNX models that ``examples/edgec.toml`` builds.

    python examples/make_build_models.py [OUT_DIR]   # default: next to this script

``tiny_mlp.onnx``: x[1,16] → Gemm(16→32) → Relu → Gemm(32→8).
``tiny_conv.onnx``: x[1,3,16,16] → Conv(3→4, 3x3, pad 1) → Relu → GlobalAveragePool.
Weights come from a fixed seed, so the files are the same bytes on every run (the build cache
keys on them).
"""

from __future__ import annotations

import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def _init(name: str, array: np.ndarray) -> TensorProto:
    return numpy_helper.from_array(array.astype(np.float32), name)


def _save(graph, path: str) -> None:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="edgec-examples")
    model.ir_version = 10  # onnxruntime 1.31 refuses the IR version onnx 1.23 writes by default
    onnx.checker.check_model(model)
    onnx.save(model, path)


def tiny_mlp(path: str, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    graph = helper.make_graph(
        [
            helper.make_node("Gemm", ["x", "w1", "b1"], ["h"], transB=1),
            helper.make_node("Relu", ["h"], ["r"]),
            helper.make_node("Gemm", ["r", "w2", "b2"], ["y"], transB=1),
        ],
        "tiny_mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8])],
        [_init("w1", rng.standard_normal((32, 16)) * 0.3), _init("b1", rng.standard_normal(32) * 0.1),
         _init("w2", rng.standard_normal((8, 32)) * 0.3), _init("b2", rng.standard_normal(8) * 0.1)],
    )
    _save(graph, path)


def tiny_conv(path: str, seed: int = 1) -> None:
    rng = np.random.default_rng(seed)
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1], kernel_shape=[3, 3]),
            helper.make_node("Relu", ["c"], ["r"]),
            helper.make_node("GlobalAveragePool", ["r"], ["y"]),
        ],
        "tiny_conv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 1, 1])],
        [_init("w", rng.standard_normal((4, 3, 3, 3)) * 0.3), _init("b", rng.standard_normal(4) * 0.1)],
    )
    _save(graph, path)


def main(out_dir: str) -> None:
    os.makedirs(out_dir, exist_ok=True)
    tiny_mlp(os.path.join(out_dir, "tiny_mlp.onnx"))
    tiny_conv(os.path.join(out_dir, "tiny_conv.onnx"))
    print(f"wrote tiny_mlp.onnx and tiny_conv.onnx to {out_dir}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__)))
