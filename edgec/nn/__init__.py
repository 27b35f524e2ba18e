"""Sparse 3-D convolution layers in plain PyTorch, registered as ``edgec::*`` custom ops so
``torch.export`` keeps each layer as one node, and exportable to the ``edgec`` ONNX domain."""

from edgec.nn.functional import SparseInputError
from edgec.nn.modules import (SparseConv3d, SparseInverseConv3d, SparseTensor, SparseToDense, SubMConv3d,
                              Voxelize)

__all__ = ["SparseTensor", "SparseConv3d", "SubMConv3d", "SparseInverseConv3d", "SparseToDense", "Voxelize",
           "SparseInputError", "export_onnx"]


def export_onnx(module, example_inputs, path, **kwargs):
    """Export ``module`` to ONNX with ``edgec``-domain sparse ops (see :mod:`edgec.nn.export`)."""
    from edgec.nn.export import export_onnx as _export

    return _export(module, example_inputs, path, **kwargs)
