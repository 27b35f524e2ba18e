"""The ``edgec::*`` sparse custom ops of :mod:`edgec.nn` in a ``torch.export`` program, converted to
Relax by the same emitters the ONNX ``edgec`` domain uses (``edgec.passes.sparse_conv.ops``)."""

from __future__ import annotations

from tvm import relax

# fx node target names (``torch.ops.edgec.<op>.default.__name__``)
_CONV, _DENSE, _VOXELIZE = "sparse_conv3d.default", "sparse_to_dense.default", "voxelize.default"


def register_ops() -> None:
    """Make the ``edgec::*`` ops known to torch (needed before loading a .pt2 that uses them)."""
    try:
        import edgec.nn.ops  # noqa: F401
    except ImportError:  # torch without edgec.nn's needs: such a program fails to load with torch's message
        pass


def _uses_sparse(program) -> bool:
    return any(n.op == "call_function" and getattr(n.target, "namespace", None) == "edgec"
               for n in program.graph.nodes)


def custom_convert_map(program) -> dict:
    """Converters for ``from_exported_program(custom_convert_map=...)``; empty when the program has
    no sparse ops (so other programs never import the sparse lowering)."""
    if not _uses_sparse(program):
        return {}
    return {_CONV: _sparse_conv3d, _DENSE: _sparse_to_dense, _VOXELIZE: _voxelize}


def _sparse_conv3d(node, importer):
    from edgec.passes.sparse_conv.ops import SparseConvAttrs, emit_sparse_conv3d

    (feats, coords, weight, bias, out_coords, kernel_size, stride, dilation, padding, subm, inverse,
     spatial_shape) = importer.retrieve_args(node)
    attrs = SparseConvAttrs(kernel_size=tuple(kernel_size), stride=tuple(stride), dilation=tuple(dilation),
                            padding=tuple(padding), subm=bool(subm), inverse=bool(inverse),
                            spatial_shape=tuple(spatial_shape) if spatial_shape is not None else None,
                            name=node.name)
    out, out_coords = emit_sparse_conv3d(importer.block_builder, feats, coords, weight, bias, out_coords, attrs)
    return relax.Tuple([out, out_coords])


def _sparse_to_dense(node, importer):
    from edgec.passes.sparse_conv.ops import emit_sparse_to_dense

    feats, coords, spatial_shape, batch_size = importer.retrieve_args(node)
    return emit_sparse_to_dense(importer.block_builder, feats, coords, tuple(spatial_shape), int(batch_size))


def _voxelize(node, importer):
    from edgec.passes.sparse_conv.ops import emit_voxelize

    points, voxel_size, point_range, max_voxels = importer.retrieve_args(node)
    feats, coords = emit_voxelize(importer.block_builder, points, voxel_size, point_range, int(max_voxels))
    return relax.Tuple([feats, coords])
