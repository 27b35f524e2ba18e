"""Converters for ONNX ops that stock TVM lacks or gets wrong; each module registers its own."""
