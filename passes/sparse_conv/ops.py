"""Relax emitters of the sparse operators; every step is a ``call_tir`` to a kernel in this package.

The number of points N is a symbolic dimension: one artifact serves every scan up to
``max_points`` (checked at run time). A strided conv's output count M depends on the data: its
kernels write the sorted unique output sites into an N·K buffer plus a count, ``tensor_to_shape``
turns the count into a shape, and a ``match_cast`` binds the new symbolic M that the following
kernels are sized by.

Kernel maps are shared: within one BlockBuilder, the index of a coordinate tensor, the output
sites of a strided conv, and the neighbour map of a (coords, geometry) pair are each emitted once
and reused by every layer that asks for the same thing. ``_methods`` picks how maps are built
(merge/hash/binary search); ``choose_dataflow`` picks each conv's dataflow.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import numpy as np
import tvm
from tvm import relax, tirx

from edgec.errors import BadInputError
from edgec.passes.sparse_conv import conv, dense, hashmap, kmap
from edgec.passes.sparse_conv.reference import output_extent

DEFAULT_MAX_POINTS = 1 << 20
DATAFLOWS = ("implicit_gemm", "gather_scatter")
KERNEL_MAPS = ("hash", "sort")


class SparseError(BadInputError):
    """A sparse operator's attributes or input shapes are invalid."""


def _triple(value, name, minimum):
    t = tuple(int(v) for v in value) if isinstance(value, (tuple, list)) else (int(value),) * 3
    if len(t) != 3 or any(v < minimum for v in t):
        raise SparseError(f"sparse conv: {name}={value} must be 3 integers >= {minimum}")
    return t


@dataclass(frozen=True)
class SparseConvAttrs:
    kernel_size: tuple
    stride: tuple = (1, 1, 1)
    dilation: tuple = (1, 1, 1)
    padding: tuple = (0, 0, 0)
    subm: bool = False
    inverse: bool = False
    spatial_shape: tuple | None = None
    relu: bool = False  # fused ReLU epilogue
    dataflow: str = "auto"  # "implicit_gemm", "gather_scatter", or "auto" (the autotuner's choice, else implicit)
    max_points: int = DEFAULT_MAX_POINTS
    kernel_map: str = "auto"  # "hash" (CPU only), "sort", or "auto" (see _methods)
    name: str = field(default="", compare=False)

    def __post_init__(self):
        set_ = object.__setattr__
        set_(self, "kernel_size", _triple(self.kernel_size, "kernel_size", 1))
        set_(self, "stride", _triple(self.stride, "stride", 1))
        set_(self, "dilation", _triple(self.dilation, "dilation", 1))
        set_(self, "padding", _triple(self.padding, "padding", 0))
        set_(self, "subm", bool(self.subm))
        set_(self, "inverse", bool(self.inverse))
        if self.spatial_shape is not None:
            set_(self, "spatial_shape", _triple(self.spatial_shape, "spatial_shape", 1))
        where = f"SparseConv3d{' ' + repr(self.name) if self.name else ''}"
        if self.subm and self.inverse:
            raise SparseError(f"{where}: subm and inverse cannot both be set")
        if self.subm and (self.stride != (1, 1, 1) or any(k % 2 == 0 for k in self.kernel_size)):
            raise SparseError(f"{where}: subm needs stride 1 and odd kernel sizes, got "
                              f"kernel_size={self.kernel_size} stride={self.stride}")
        if self.dataflow not in ("auto",) + DATAFLOWS:
            raise SparseError(f"{where}: dataflow {self.dataflow!r} is not one of auto, {', '.join(DATAFLOWS)}")
        if self.kernel_map not in ("auto",) + KERNEL_MAPS:
            raise SparseError(f"{where}: kernel_map {self.kernel_map!r} is not one of auto, hash, sort")
        if not 0 < int(self.max_points) <= 1 << 31:
            raise SparseError(f"{where}: max_points={self.max_points} must be in [1, 2^31]")

    @property
    def kvol(self) -> int:
        return int(np.prod(self.kernel_size))

    def geometry(self) -> tuple:
        """What a neighbour map depends on (besides the coordinates)."""
        return (self.kernel_size, self.stride, self.dilation, self.padding, self.subm, self.inverse,
                self.spatial_shape)


# -- shared kernel maps ------------------------------------------------------------------------

_CACHE: dict = {"bb": None, "entries": []}


def _cached(bb, key: tuple, make):
    """``make()`` once per (BlockBuilder, key); relax expressions in ``key`` compare by identity."""
    if _CACHE["bb"] is not bb:
        _CACHE["bb"], _CACHE["entries"] = bb, []

    def same(a, b):
        if isinstance(a, tvm.runtime.Object) or isinstance(b, tvm.runtime.Object):
            return isinstance(a, tvm.runtime.Object) and isinstance(b, tvm.runtime.Object) and a.same_as(b)
        return a == b

    for k, value in _CACHE["entries"]:
        if len(k) == len(key) and all(same(x, y) for x, y in zip(k, key)):
            return value
    value = make()
    _CACHE["entries"].append((key, value))
    return value


def _gpu(target=None) -> bool:
    target = target or tvm.target.Target.current(allow_none=True)
    return target is not None and "gpu" in list(target.keys)


def _rows(expr):
    return expr.ty.shape[0]


def _t(shape, dtype):
    return relax.TensorType(shape, dtype)


def _check_coords(expr, what: str):
    ty = expr.ty
    if not isinstance(ty, relax.TensorType) or ty.ndim != 2 or str(ty.dtype) != "int32":
        raise SparseError(f"{what} must be an int32 tensor [N, 4], got {ty}")
    last = ty.shape[1] if ty.shape is not None else None
    if not isinstance(last, tirx.IntImm) or int(last) != 4:
        raise SparseError(f"{what} must have 4 columns (batch, x, y, z), got shape {list(ty.shape)}")


_LOOKUP_OVERRIDE = None


def _methods(attrs: SparseConvAttrs, gpu: bool) -> tuple[str, str]:
    """(lookup, sites): how neighbours are found ("hash" probes, "merge" of sorted lists on CPUs,
    "search" = binary search on GPUs) and how strided output sites are deduplicated ("hash" or
    "sort"). ``auto``: merge + hash on CPUs, search + sort on GPUs."""
    if _LOOKUP_OVERRIDE:  # tests run the GPU lookup algorithm on the CPU
        return _LOOKUP_OVERRIDE, "sort"
    if attrs.kernel_map == "hash":
        if gpu:
            raise SparseError(f"SparseConv3d {attrs.name!r}: the hash kernel map runs on CPUs only; use sort")
        return "hash", "hash"
    if gpu:
        return "search", "sort"
    return ("merge", "sort") if attrs.kernel_map == "sort" else ("merge", "hash")


def _coord_index(bb, coords, max_points: int, gpu: bool, hashed: bool):
    """The lookup index of a coordinate tensor: a hash table (keys, rows) or the sorted keys and
    their order. Refuses bad coordinates at run time."""

    def make():
        n = _rows(coords)
        keys = bb.emit(relax.call_tir(bb.add_func(kmap.pack_keys(max_points, gpu), "sparse_pack_keys"),
                                      [coords], _t([n], "int64")))
        if hashed:
            cap = hashmap.table_size(n)
            table = bb.emit(relax.call_tir(bb.add_func(hashmap.build(), "sparse_hash_build"), [keys],
                                           [_t([cap], "int64"), _t([cap], "int32")]))
            return relax.TupleGetItem(table, 0), relax.TupleGetItem(table, 1)
        order = _argsort(bb, keys, gpu)
        skeys = bb.emit(relax.call_tir(bb.add_func(kmap.sorted_keys(gpu), "sparse_sorted_keys"),
                                       [keys, order], _t([n], "int64")))
        return skeys, order

    return _cached(bb, ("index", coords, max_points, hashed), make)


def _argsort(bb, keys, gpu: bool):
    """Ascending order of int64 keys: our TIR radix sort on CPUs, TVM's TIR sort on GPUs."""
    if gpu:
        return bb.emit(relax.op.argsort(keys, axis=0, dtype="int32"))
    return bb.emit(relax.call_tir(bb.add_func(kmap.radix_argsort(), "sparse_radix_argsort"), [keys],
                                  _t([_rows(keys)], "int32")))


def _sort(bb, keys, gpu: bool):
    if gpu:
        return bb.emit(relax.op.sort(keys, axis=0))
    order = _argsort(bb, keys, gpu)
    return bb.emit(relax.call_tir(bb.add_func(kmap.sorted_keys(gpu, check=False), "sparse_gather_keys"),
                                  [keys, order], _t([_rows(keys)], "int64")))


def _offsets_const(kernel_size):
    return relax.const(np.array(kmap.offsets(kernel_size), np.int32).reshape(-1, 3))


def _strided_sites(bb, coords, index, attrs: SparseConvAttrs, gpu: bool):
    """(sorted keys [M], coordinates [M, 4]) of a strided conv's unique output sites; M depends on the data."""

    def make():
        n = _rows(coords)
        extent = None
        if attrs.spatial_shape is not None:
            extent = output_extent(attrs.spatial_shape, attrs.kernel_size, attrs.stride, attrs.dilation, attrs.padding)
            if min(extent) < 1:
                raise SparseError(f"SparseConv3d {attrs.name!r}: spatial_shape {attrs.spatial_shape} leaves no output")
        length = n * attrs.kvol
        offs = _offsets_const(attrs.kernel_size)
        hashed = _methods(attrs, gpu)[1] == "hash"
        if hashed:
            cap = hashmap.table_size(n, hashmap.sites_bound(attrs.kernel_size, attrs.stride, attrs.dilation))
            fn = hashmap.sites(attrs.kvol, attrs.stride, attrs.padding, attrs.dilation, extent)
            found = bb.emit(relax.call_tir(bb.add_func(fn, "sparse_hash_sites"), [coords, index[0], offs],
                                           [_t([cap], "int64"), _t([length], "int64"), _t([1], "int64"),
                                            _t([n, attrs.kvol], "int32"), _t([length], "int32")]))
            keys, count = relax.TupleGetItem(found, 1), relax.TupleGetItem(found, 2)
        else:
            cand_fn = kmap.candidates(attrs.kvol, attrs.stride, attrs.padding, attrs.dilation, extent, gpu)
            cand = bb.emit(relax.call_tir(bb.add_func(cand_fn, "sparse_out_candidates"), [coords, index[0], offs],
                                          _t([length], "int64")))
            ordered = _sort(bb, cand, gpu)
            uniq = bb.emit(relax.call_tir(bb.add_func(kmap.unique_sorted(gpu), "sparse_unique"), [ordered],
                                          [_t([length], "int64"), _t([1], "int64")]))
            keys, count = relax.TupleGetItem(uniq, 0), relax.TupleGetItem(uniq, 1)
        shape = bb.emit(relax.op.tensor_to_shape(count))
        m = tirx.Var("sparse_m", "int64")
        bb.match_cast(shape, relax.ShapeType([m]))
        keys = bb.emit(relax.call_tir(bb.add_func(hashmap.take_prefix(gpu), "sparse_take_prefix"), [keys],
                                      _t([m], "int64")))
        if hashed:  # only the unique sites get sorted
            order = _argsort(bb, keys, gpu)
            keys = bb.emit(relax.call_tir(bb.add_func(kmap.sorted_keys(gpu, check=False), "sparse_gather_keys"),
                                          [keys, order], _t([m], "int64")))
        out_c = bb.emit(relax.call_tir(bb.add_func(kmap.decode_keys(gpu), "sparse_decode"), [keys],
                                       _t([m, 4], "int32")))
        if hashed:  # the discovery pass already paired inputs with sites: the map is a scatter
            pair_slots, site_slots = relax.TupleGetItem(found, 3), relax.TupleGetItem(found, 4)
            ranks = bb.emit(relax.call_tir(bb.add_func(hashmap.slot_ranks(), "sparse_slot_ranks"), [order, site_slots],
                                           _t([cap], "int32")))
            nbr = bb.emit(relax.call_tir(bb.add_func(hashmap.scatter_map(attrs.kvol), "sparse_scatter_map"),
                                         [pair_slots, ranks], _t([m, attrs.kvol], "int32")))
            _cached(bb, ("nbr", out_c, coords, attrs.geometry(), attrs.max_points, _methods(attrs, gpu)), lambda: nbr)
        return keys, out_c

    return _cached(bb, ("sites", coords, attrs.geometry(), _methods(attrs, gpu)), make)


def _neighbors(bb, out_coords, coords, attrs: SparseConvAttrs, gpu: bool, out_keys=None):
    """nbr [M, K] int32: for each output row and kernel offset, the input row or -1.

    ``out_keys``: the output sites' sorted keys when their rows are already in key order."""

    def make():
        lookup = _methods(attrs, gpu)[0]
        index = _coord_index(bb, coords, attrs.max_points, gpu, lookup == "hash")
        pad = attrs.padding
        if attrs.subm:  # centred kernel
            pad = tuple((k - 1) // 2 * d for k, d in zip(attrs.kernel_size, attrs.dilation))
        offs = _offsets_const(attrs.kernel_size)
        ty = _t([_rows(out_coords), attrs.kvol], "int32")
        if lookup != "merge":
            fn = kmap.neighbor_map(attrs.kvol, attrs.stride, pad, attrs.dilation, attrs.inverse, gpu, lookup == "hash")
            return bb.emit(relax.call_tir(bb.add_func(fn, "sparse_neighbor_map"), [out_coords, offs, *index], ty))
        if out_keys is not None:
            queries = (out_keys, relax.const(np.zeros(1, np.int32)))
        else:  # the query rows in key order: the output coordinates' own index
            queries = _coord_index(bb, out_coords, attrs.max_points, gpu, False)
        fn = kmap.neighbor_map_merge(attrs.kvol, attrs.stride, pad, attrs.dilation, attrs.inverse, out_keys is not None,
                                     attrs.subm)
        return bb.emit(relax.call_tir(bb.add_func(fn, "sparse_neighbor_merge"), [*queries, offs, *index], ty))

    return _cached(bb, ("nbr", out_coords, coords, attrs.geometry(), attrs.max_points, _methods(attrs, gpu)), make)


_CHOICES: dict = {"force": None, "groups": {}}


@contextlib.contextmanager
def dataflow_choices(groups: dict | None = None, force: str | None = None):
    """Within the block, convs left on ``auto`` take ``force``, else their group's entry in
    ``groups`` ({layer group: dataflow}, as the sparse autotuner records them)."""
    saved = dict(_CHOICES)
    _CHOICES.update(force=force, groups=dict(groups or {}))
    try:
        yield
    finally:
        _CHOICES.update(saved)


def layer_group(attrs: SparseConvAttrs, cin: int, cout: int, dtype: str) -> str:
    return KernelSpec("", attrs.kvol, cin, cout, dtype, attrs.relu, False, False).group


def choose_dataflow(attrs: SparseConvAttrs, cin: int, cout: int, dtype: str = "float32") -> str:
    """The attribute, else the autotuner's choice for the layer group, else implicit GEMM (on the
    CPU it measured faster than gather-GEMM-scatter on every layer of bench/sparse_conv.py)."""
    if attrs.dataflow != "auto":
        return attrs.dataflow
    if _CHOICES["force"]:
        return _CHOICES["force"]
    group = _CHOICES["groups"].get(layer_group(attrs, cin, cout, dtype))
    if group:
        return group
    return "implicit_gemm"


def _pairs(bb, nbr, kvol: int, gpu: bool):
    def make():
        m = _rows(nbr)
        return bb.emit(relax.call_tir(bb.add_func(conv.pair_lists(kvol, gpu), "sparse_pair_lists"), [nbr],
                                      [_t([kvol, m], "int32"), _t([kvol, m], "int32"), _t([kvol], "int32")]))

    return _cached(bb, ("pairs", nbr), make)


# Cin·Cout from which the CPU implicit GEMM works on register tiles of rows (measured on
# bench/sparse_conv.py: tiles win from 32x64 up, 3x at 128x96; a row at a time wins at 16x16)
_TILED_IMPLICIT_MACS = 32 * 32


@dataclass(frozen=True)
class KernelSpec:
    """One conv kernel's build parameters; the PrimFunc carries them (attribute ``sparse_conv``)
    so that the epilogue fusion pass can rebuild it with more fused."""

    flow: str
    kvol: int
    cin: int
    cout: int
    dtype: str
    relu: bool
    residual: bool
    gpu: bool

    @property
    def group(self) -> str:
        """Layers with the same kernel volume, channels, dtype and epilogue run the same kernel."""
        return f"k{self.kvol}_{self.cin}x{self.cout}_{self.dtype}{'_relu' if self.relu else ''}" + (
            "_res" if self.residual else "")

    @property
    def name(self) -> str:
        # the group in the name lets per-kernel timings map back to layer groups
        return f"sparse_conv_{self.flow}_{self.group}"

    def build(self):
        if self.gpu:
            make = conv.implicit_gemm if self.flow == "implicit_gemm" else conv.gather_gemm_scatter
            func = make(self.kvol, self.cin, self.cout, self.dtype, self.relu, True, self.residual)
        elif self.flow == "gather_scatter":
            func = conv.gather_gemm_scatter_cpu(self.kvol, self.cin, self.cout, self.dtype, self.relu, self.residual)
        elif self.cin * self.cout >= _TILED_IMPLICIT_MACS:
            func = conv.implicit_gemm_cpu(self.kvol, self.cin, self.cout, self.dtype, self.relu, self.residual)
        else:  # narrow layers: row at a time (a tile of rows rarely shares an offset)
            func = conv.implicit_gemm(self.kvol, self.cin, self.cout, self.dtype, self.relu, False, self.residual)
        return func.with_attr("sparse_conv", {k: str(v) for k, v in self.__dict__.items()})

    @staticmethod
    def of(func) -> "KernelSpec | None":
        attrs = func.attrs.get("sparse_conv") if func.attrs is not None else None
        if attrs is None:
            return None
        a = {str(k): str(v) for k, v in attrs.items()}
        return KernelSpec(a["flow"], int(a["kvol"]), int(a["cin"]), int(a["cout"]), a["dtype"], a["relu"] == "True",
                          a["residual"] == "True", a["gpu"] == "True")


def emit_sparse_conv3d(bb: relax.BlockBuilder, feats, coords, weight, bias, out_coords, attrs: SparseConvAttrs):
    """Returns (out_feats [M, Cout], out_coords [M, 4]) as Relax expressions."""
    where = f"SparseConv3d{' ' + repr(attrs.name) if attrs.name else ''}"
    gpu = _gpu()
    _check_coords(coords, f"{where}: coords")
    fty, wty = feats.ty, weight.ty
    if fty.ndim != 2 or not isinstance(fty.shape[1], tirx.IntImm):
        raise SparseError(f"{where}: feats must be [N, C] with a static C, got {fty}")
    dtype = str(fty.dtype)
    if dtype not in ("float32", "float16"):
        raise SparseError(f"{where}: feats dtype {dtype} is not float32 or float16")
    cin = int(fty.shape[1])
    wshape = [int(d) if isinstance(d, tirx.IntImm) else None for d in (wty.shape or [])]
    if len(wshape) != 5 or None in wshape or tuple(wshape[:3]) != attrs.kernel_size:
        raise SparseError(f"{where}: weight shape {wshape} is not [Kx, Ky, Kz, Cin, Cout] with kernel "
                          f"{list(attrs.kernel_size)}")
    if wshape[3] != cin:
        raise SparseError(f"{where}: channel mismatch: feats have {cin} channels, weight expects {wshape[3]}")
    fn_ = _rows(feats)
    if not tvm.sym.analyzer.Analyzer().can_prove_equal(fn_, _rows(coords)):
        raise SparseError(f"{where}: feats has {fn_} rows but coords has {_rows(coords)}")
    cout = wshape[4]
    w = bb.normalize(relax.op.reshape(weight, [attrs.kvol, cin, cout]))
    if str(wty.dtype) != dtype:
        w = bb.normalize(relax.op.astype(w, dtype))
    if bias is None:
        b = relax.const(np.zeros(cout, dtype))
    else:
        bshape = [int(d) for d in bias.ty.shape]
        if bshape != [cout]:
            raise SparseError(f"{where}: bias shape {bshape} does not match Cout={cout}")
        b = bias if str(bias.ty.dtype) == dtype else bb.normalize(relax.op.astype(bias, dtype))

    if attrs.subm:
        out_c = coords
    elif attrs.inverse:
        if out_coords is None:
            raise SparseError(f"{where}: inverse=1 needs the out_coords input")
        _check_coords(out_coords, f"{where}: out_coords")
        out_c = out_coords
    out_keys = None
    if not attrs.subm and not attrs.inverse:
        index = _coord_index(bb, coords, attrs.max_points, gpu, _methods(attrs, gpu)[0] == "hash")
        out_keys, out_c = _strided_sites(bb, coords, index, attrs, gpu)
    nbr = _neighbors(bb, out_c, coords, attrs, gpu, out_keys)
    m = _rows(out_c)
    flow = choose_dataflow(attrs, cin, cout, dtype)
    if flow == "implicit_gemm":
        args = [feats, nbr]
    else:
        pairs = _pairs(bb, nbr, attrs.kvol, gpu)
        args = [feats, relax.TupleGetItem(pairs, 0), relax.TupleGetItem(pairs, 1), relax.TupleGetItem(pairs, 2)]
    spec = KernelSpec(flow, attrs.kvol, cin, cout, dtype, attrs.relu, False, gpu)
    out = bb.emit(relax.call_tir(bb.add_func(spec.build(), spec.name), args + [w, b, relax.const(np.zeros((1, cout), dtype))],
                                 _t([m, cout], dtype)))
    return out, out_c


def emit_sparse_to_dense(bb: relax.BlockBuilder, feats, coords, spatial_shape, batch_size):
    """Dense [B, C, X, Y, Z]; rows outside the grid are dropped."""
    _check_coords(coords, "SparseToDense: coords")
    shape = _triple(spatial_shape, "spatial_shape", 1)
    if int(batch_size) < 1:
        raise SparseError(f"SparseToDense: batch_size={batch_size} must be >= 1")
    fty = feats.ty
    if fty.ndim != 2 or not isinstance(fty.shape[1], tirx.IntImm):
        raise SparseError(f"SparseToDense: feats must be [N, C] with a static C, got {fty}")
    c, dtype = int(fty.shape[1]), str(fty.dtype)
    fn = dense.to_dense(int(batch_size), c, shape, dtype, _gpu())
    return bb.emit(relax.call_tir(bb.add_func(fn, "sparse_to_dense"), [feats, coords],
                                  _t([int(batch_size), c, *shape], dtype)))


def emit_voxelize(bb: relax.BlockBuilder, points, voxel_size, point_range, max_voxels):
    """(feats [M, P], coords [M, 4]): the mean of each voxel's points, voxels in coordinate order."""
    voxel_size = [float(v) for v in voxel_size]
    point_range = [float(v) for v in point_range]
    if len(voxel_size) != 3 or min(voxel_size) <= 0:
        raise SparseError(f"Voxelize: voxel_size {voxel_size} must be 3 positive numbers")
    if len(point_range) != 6 or any(point_range[i] >= point_range[i + 3] for i in range(3)):
        raise SparseError(f"Voxelize: point_range {point_range} must be (xmin, ymin, zmin, xmax, ymax, zmax)")
    grid = [int(np.ceil((point_range[i + 3] - point_range[i]) / voxel_size[i])) for i in range(3)]
    if max(grid) > kmap.FIELD:
        raise SparseError(f"Voxelize: the grid {grid} exceeds 65536 voxels on an axis")
    if int(max_voxels) < 1:
        raise SparseError(f"Voxelize: max_voxels={max_voxels} must be >= 1")
    pty = points.ty
    if pty.ndim != 2 or not isinstance(pty.shape[1], tirx.IntImm) or int(pty.shape[1]) < 3:
        raise SparseError(f"Voxelize: points must be [P, 3+F] with static columns, got {pty}")
    cols, dtype, gpu = int(pty.shape[1]), str(pty.dtype), _gpu()
    p = _rows(points)
    keys = bb.emit(relax.call_tir(bb.add_func(dense.voxel_keys(cols, dtype, voxel_size, point_range, gpu),
                                              "sparse_voxel_keys"), [points], _t([p], "int64")))
    order = _argsort(bb, keys, gpu)
    seg = bb.emit(relax.call_tir(bb.add_func(dense.segments(int(max_voxels), gpu), "sparse_voxel_segments"),
                                 [keys, order], [_t([p + 1], "int64"), _t([1], "int64")]))
    shape = bb.emit(relax.op.tensor_to_shape(relax.TupleGetItem(seg, 1)))
    m = tirx.Var("voxels", "int64")
    bb.match_cast(shape, relax.ShapeType([m]))
    out = bb.emit(relax.call_tir(bb.add_func(dense.voxel_mean(cols, dtype, gpu), "sparse_voxel_mean"),
                                 [points, keys, order, relax.TupleGetItem(seg, 0)],
                                 [_t([m, cols], dtype), _t([m, 4], "int32")]))
    return bb.emit(relax.TupleGetItem(out, 0)), bb.emit(relax.TupleGetItem(out, 1))
