"""Default CPU schedules: tiled, vectorized and parallel kernels without any tuning.

Two rules, in DLight's contract (None when a rule does not apply):

``TiledReduction``  one reduction block whose loops are spatial-then-reduction (conv, matmul,
                    pooling): the two innermost spatial loops become a register tile
                    (``rows × vector``), accumulated in a local buffer so LLVM keeps it in
                    registers; the outer spatial loops are fused into one parallel loop;
                    elementwise producers (padding) are inlined and the epilogue (bias, BN,
                    activation, residual add) is computed on the tile while it is hot.
``Injective``       elementwise / broadcast / layout kernels: each block's loops are fused,
                    parallel outside, vectorized inside.
"""

from __future__ import annotations

import re

from tvm import s_tir, tirx
from tvm.s_tir.dlight.analysis import normalize_prim_func
from tvm.s_tir.dlight.base import ScheduleRule, get_extent, try_inline
from tvm.target import Target
from tvm.target.codegen import llvm_get_vector_width

# Rows of the register tile: 4 rows × 2 vectors of accumulators stay inside AVX2's 16 vector
# registers together with the operands; with 32 (AVX-512, AArch64 NEON) the tile is 4 × 4.
TILE_ROWS = 4
# Fewer iterations than this per parallel task is not worth a thread.
MIN_PARALLEL_WORK = 1 << 12


def _is_cpu(target: Target) -> bool:
    return target.kind.name == "llvm"


def vector_lanes(target: Target, dtype_bits: int = 32) -> int:
    try:
        bits = int(llvm_get_vector_width(target))
    except Exception:  # an LLVM without this target: assume 128-bit SIMD
        bits = 128
    return max(1, max(bits, 128) // dtype_bits)


def _vector_registers(target: Target) -> int:
    """Architectural vector registers: 32 on AArch64 (NEON) and AVX-512, 16 on AVX2/SSE."""
    if str(target.attrs.get("mtriple", "")).startswith("aarch64"):
        return 32
    try:
        return 32 if int(llvm_get_vector_width(target)) >= 512 else 16
    except Exception:  # an LLVM without this target
        return 16


def _static(extent) -> int | None:
    return extent if isinstance(extent, int) else None


def _pick_factor(extent, preferred: list[int]) -> int:
    """The first preferred factor dividing a static extent; else the first (with a guard)."""
    n = _static(extent)
    if n is None:
        return preferred[0]
    for f in preferred:
        if n % f == 0:
            return f
    return preferred[-1] if n < preferred[-1] else preferred[0]


def _dtype_bits(sch: s_tir.Schedule, block) -> int:
    stmt = sch.get(block)
    return stmt.writes[0].source.dtype.bits if stmt.writes else 32


class TiledReduction(ScheduleRule):
    def apply(self, func, target: Target, _tunable: bool):
        if not isinstance(func, tirx.PrimFunc) or not _is_cpu(target):
            return None
        sch = s_tir.Schedule(func)
        infos = normalize_prim_func(sch)
        if infos is None:
            return None
        reductions = [b for b in infos if b.is_reduction()]
        if len(reductions) != 1 or not re.fullmatch(r"S+R+", reductions[0].dom_kind()):
            return None
        if any(not b.is_injective() for b in infos if b is not reductions[0]):
            return None
        # Padding stays a separate (parallel, vectorized) pass: inlined, it would put a bounds
        # check on every load of the inner loop and stop its vectorization.
        pads = [b for b in infos if _is_padding(sch, b)]
        if pads and _vector_reads_input(sch, reductions[0], pads):
            pads = []  # depthwise: the border check is per pixel, the same for every lane of a vector load
        infos = try_inline(sch, [b for b in infos if b not in pads]) + pads
        main = next(b for b in infos if b.is_reduction())
        in_order = [sch.get(b).name_hint for b in sch.get_child_blocks(sch.get_sblock("root"))]
        main_at = in_order.index(sch.get(main.block_rv).name_hint)
        producers = [b.block_rv for b in infos if in_order.index(sch.get(b.block_rv).name_hint) < main_at]
        epilogue = [b.block_rv for b in infos if in_order.index(sch.get(b.block_rv).name_hint) > main_at]
        for producer in producers:
            _schedule_injective(sch, producer, target)

        kind = main.dom_kind()
        n_spatial = kind.count("S")
        loops = sch.get_loops(main.block_rv)
        lanes = vector_lanes(target, _dtype_bits(sch, main.block_rv))
        static = [_static(get_extent(sch, l)) is not None for l in loops]
        n_dynamic = static.index(True) if True in static else len(static)
        # only leading spatial loops (a batch) may be symbolic, and two static ones must remain
        if not all(static[n_dynamic:]) or n_spatial - n_dynamic < 1:
            _schedule_symbolic_reduction(sch, main.block_rv, loops, n_spatial, lanes)
            for block in epilogue:
                _schedule_injective(sch, block, target)
            return sch
        dynamic, spatial, reduction = loops[:n_dynamic], loops[n_dynamic:n_spatial], loops[n_spatial:]

        widths = [4 * lanes] if _vector_registers(target) >= 32 else []
        vec = _pick_factor(get_extent(sch, spatial[-1]), widths + [2 * lanes, lanes, lanes // 2, 4, 2])
        vec_o, vec_i = sch.split(spatial[-1], factors=[None, vec])
        outer = list(spatial[:-1])
        rows_i = None
        if outer and get_extent(sch, outer[-1]) >= TILE_ROWS:
            rows = _pick_factor(get_extent(sch, outer[-1]), [TILE_ROWS, 2])
            rows_o, rows_i = sch.split(outer[-1], factors=[None, rows])
            outer[-1] = rows_o
        elif outer and get_extent(sch, outer[-1]) > 1:
            # a narrow image (the 3x3 maps deep in a ResNet): all its columns form the tile, so
            # each weight vector loaded serves every column instead of one
            rows_i = outer.pop()
        inner = [l for l in (rows_i, vec_i) if l is not None]
        # symbolic loops stay outside, unfused: the tile's regions are then bounded exactly
        sch.reorder(*dynamic, *outer, vec_o, *reduction, *inner)
        fused = sch.fuse(*outer, vec_o) if outer else vec_o

        # accumulate the tile in a local buffer; write it back (through the epilogue) once
        acc = sch.cache_write(main.block_rv, 0, "local")
        sch.reverse_compute_at(acc, fused, preserve_unit_loops=True)
        written_back = [acc]
        for block in epilogue:
            try:
                sch.reverse_compute_inline(block)
            except Exception:  # not inlinable (a broadcast, say): computed on the tile instead
                sch.reverse_compute_at(block, fused, preserve_unit_loops=True)
                written_back.append(block)

        # set loop kinds while the block still has its init: TVM checks reduction blocks by it
        sch.parallel(fused)
        sch.vectorize(vec_i)
        if rows_i is not None:
            sch.unroll(rows_i)
        init = sch.decompose_reduction(main.block_rv, reduction[0])
        init_vec = sch.get_loops(init)[-1]
        if sch.get(init_vec).kind != tirx.ForKind.VECTORIZED:
            sch.vectorize(init_vec)
        for block in written_back:
            _vectorize_innermost(sch, block, lanes)
        return sch


def _vector_reads_input(sch: s_tir.Schedule, main, pads) -> bool:
    """Whether the reduction reads each padded input along its innermost output axis, as a
    depthwise conv or a pooling does (channels are both): a vector load then needs one border
    check per pixel, not one per lane, and a padding pass would only copy the input."""
    block = sch.get(main.block_rv)
    spatial = [iv.var for iv in block.iter_vars if iv.iter_type == tirx.IterVar.DataPar]
    padded = {sch.get(p.block_rv).writes[0].source.name for p in pads}
    reads = [r for r in block.reads if r.source.name in padded]
    return bool(reads) and bool(spatial) and all(
        isinstance(r.region[-1].min, tirx.Var) and r.region[-1].min.same_as(spatial[-1]) for r in reads)


def _is_padding(sch: s_tir.Schedule, info) -> bool:
    """A padding block: DLight's pattern (a select over one input), writing a larger buffer.

    DLight's test alone also takes an elementwise select, such as a vectorized ``erf``
    (:mod:`edgec.passes.vector_math`), whose place is in the epilogue.
    """
    if not info.is_data_pad(sch):
        return False
    stmt = sch.get(info.block_rv)
    shapes = [[str(d) for d in region.source.shape] for region in list(stmt.reads) + list(stmt.writes)]
    return any(shape != shapes[0] for shape in shapes)


def _schedule_symbolic_reduction(sch, block, loops, n_spatial: int, lanes: int) -> None:
    """Symbolic extents: no fusion and no cached tile, whose regions TVM cannot bound exactly
    under symbolic loops; reductions inside, the outermost spatial loop in parallel."""
    spatial, reduction = loops[:n_spatial], loops[n_spatial:]
    inner = spatial[-1]
    extent = _static(get_extent(sch, inner))
    if extent is not None and extent % lanes == 0:
        vec_o, inner = sch.split(inner, factors=[None, lanes])
        spatial = list(spatial[:-1]) + [vec_o]
    else:
        spatial = list(spatial[:-1])
    sch.reorder(*spatial, *reduction, inner)
    if spatial:
        sch.parallel(spatial[0])
    if extent is not None and extent % lanes == 0:
        sch.vectorize(inner)


def _vectorize_innermost(sch: s_tir.Schedule, block, lanes: int) -> None:
    loops = sch.get_loops(block)
    if not loops:
        return
    extent = _static(get_extent(sch, loops[-1]))
    if extent is not None and 1 < extent <= 4 * lanes:
        try:
            sch.vectorize(loops[-1])
        except s_tir.ScheduleError:  # a guarded or non-affine write-back stays scalar
            pass


class Injective(ScheduleRule):
    def apply(self, func, target: Target, _tunable: bool):
        if not isinstance(func, tirx.PrimFunc) or not _is_cpu(target):
            return None
        sch = s_tir.Schedule(func)
        infos = normalize_prim_func(sch)
        if infos is None or any(not b.is_injective() for b in infos):
            return None
        for info in try_inline(sch, infos):
            _schedule_injective(sch, info.block_rv, target)
        return sch


def _schedule_injective(sch: s_tir.Schedule, block, target: Target) -> None:
    """Fuse the block's loops; parallel outside, vectorized inside."""
    loops = sch.get_loops(block)
    if not loops:
        return
    lanes = vector_lanes(target, _dtype_bits(sch, block))
    if any(_static(get_extent(sch, l)) is None for l in loops):
        # symbolic: splitting a fused symbolic extent defeats TVM's index analysis at build
        sch.parallel(loops[0])
        inner = _static(get_extent(sch, loops[-1]))
        if len(loops) > 1 and inner is not None and inner % lanes == 0:
            _, vec = sch.split(loops[-1], factors=[None, lanes])
            sch.vectorize(vec)
        return
    # a vector that divides the innermost extent stays inside one row: its loads are contiguous
    # and a condition on the outer indices (padding borders) is the same for every lane
    row = get_extent(sch, loops[-1])
    vector = next((v for v in (4 * lanes, 2 * lanes, lanes) if row % v == 0), 4 * lanes)
    fused = sch.fuse(*loops) if len(loops) > 1 else loops[0]
    extent = get_extent(sch, fused)
    if _static(extent) is not None and extent < MIN_PARALLEL_WORK:
        if extent % lanes == 0 and extent > lanes:
            _, inner = sch.split(fused, factors=[None, lanes])
            sch.vectorize(inner)
        return
    outer, inner = sch.split(fused, factors=[None, vector])
    sch.parallel(outer)
    sch.vectorize(inner)
