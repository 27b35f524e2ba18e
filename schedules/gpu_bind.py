"""A last GPU rule: bind every loop nest that no other rule bound to threads.

Functions that mix a hand-written GPU kernel (an opaque block that launches its own threads,
as TOPI's scatter and sort do) with an ordinary block fused in front of it (a transpose of the
indices) defeat DLight's rules, which all want to own the whole function. Left alone, the
ordinary block would run on the host against device memory. This rule gives each such block
its own launch (fused loops split over 256-thread workgroups) and leaves opaque blocks as they are.
"""

from __future__ import annotations

import tvm
from tvm import s_tir
from tvm.tirx import AttrStmt, For, ForKind


def binds_threads(stmt) -> bool:
    """Whether ``stmt`` itself is a thread binding (a thread-bound loop or a ``thread_extent``)."""
    return (isinstance(stmt, For) and stmt.kind == ForKind.THREAD_BINDING) or \
        (isinstance(stmt, AttrStmt) and stmt.attr_key == "thread_extent")


def _launches_threads(stmt) -> bool:
    """Whether ``stmt`` or anything inside it binds threads."""
    if binds_threads(stmt):
        return True
    for field in ("seq", "body", "then_case", "else_case", "block", "init"):
        child = getattr(stmt, field, None)
        if child is None:
            continue
        if any(_launches_threads(c) for c in (child if field == "seq" else [child])):
            return True
    return False


class BindUnbound:
    """DLight-style rule: None when every block already runs on GPU threads, else a schedule."""

    def __init__(self, threads: int = 256):
        self.threads = threads

    def apply(self, func: tvm.tirx.PrimFunc, target, _tunable: bool):
        sch = s_tir.Schedule(func)
        try:
            root = sch.get_sblock("root")
        except Exception:  # no root block: nothing this rule understands
            return None
        changed = False
        for block in sch.get_child_blocks(root):
            if _launches_threads(sch.get(block)):
                continue  # an opaque kernel that launches its own threads
            loops = sch.get_loops(block)
            if any(sch.get(loop).kind == ForKind.THREAD_BINDING for loop in loops):
                continue
            if not loops:
                loops = [sch.add_unit_loop(block)]
            fused = sch.fuse(*loops) if len(loops) > 1 else loops[0]
            threads = min(self.threads, int(target.attrs.get("max_num_threads", self.threads)))
            bx, tx = sch.split(fused, [None, threads])
            sch.bind(bx, "blockIdx.x")
            sch.bind(tx, "threadIdx.x")
            changed = True
        return sch if changed else None
