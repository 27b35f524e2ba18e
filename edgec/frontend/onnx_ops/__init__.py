"""Converters for ONNX ops that stock TVM lacks or gets wrong; each module registers its own."""

from edgec.frontend.onnx_ops import gru, lstm  # noqa: F401,E402
