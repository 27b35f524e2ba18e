"""QuantizeInt4: every matmul with a large constant weight becomes the int4 matmul operator.

Round-to-nearest by default; with calibration inputs, AWQ (:mod:`awq`): linears sharing an
input are scaled together, and ``x / s`` is folded into the input's producer when that is a
multiplication by a constant per-channel vector used by nothing else (a norm's weight), else it
is one elementwise multiply that FuseOps fuses into the producer. After the rewrite the pass
records, in ``notes``, the weight bytes before and after and the output error against the
float model (on the calibration inputs, else random ones), both run on the host. With
``include_embeddings``, ``take(table, indices, axis=0)`` on a constant table becomes the int4
gather (:mod:`embedding`). ``substitutions`` pairs each replaced float constant with the float
values the quantized model effectively uses in its place, for ``--verify`` (edgec/verify.py).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import tvm
from tvm import relax
from tvm.ir.expr import GenericConst
from tvm.relax.expr_functor import PyExprMutator, mutator

from edgec.passes.int4 import awq, observe
from edgec.passes.int4.embedding import emit_int4_take
from edgec.passes.int4.op import emit_int4_matmul
from edgec.passes.int4.packing import GROUP_SIZES, QuantizedWeight, quantize

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Int4Options:
    group: int = 128
    symmetric: bool = False
    min_elements: int = 1 << 14  # smaller weights stay float: their bytes do not matter
    include_lm_head: bool = True
    include_embeddings: bool = False

    def __post_init__(self):
        if self.group not in GROUP_SIZES:
            raise ValueError(f"int4 group size must be one of {GROUP_SIZES}, not {self.group}")


@dataclass
class _Candidate:
    var: relax.Var  # bound to matmul(x, W)
    x: relax.Var
    weight: np.ndarray  # [K, N] as in the graph


def _candidates(func: relax.Function, options: Int4Options) -> list[_Candidate]:
    matmul = tvm.ir.Op.get("relax.matmul")
    found = []
    for block in func.body.blocks:
        for b in block.bindings:
            v = b.value
            if not (isinstance(v, relax.Call) and v.op.same_as(matmul) and isinstance(v.args[1], GenericConst)
                    and isinstance(v.args[0], relax.Var)):
                continue
            w = v.args[1].value.numpy()
            if w.ndim != 2 or w.dtype != np.float32 or w.size < options.min_elements or w.shape[0] % 32:
                continue
            found.append(_Candidate(b.var, v.args[0], w))
    if found and not options.include_lm_head:
        last = found[-1]
        if last.weight.shape[1] > last.weight.shape[0]:  # a final projection wider than its input
            found.pop()
    return found


@dataclass
class _Embedding:
    var: relax.Var  # bound to take(table, indices, axis=0)
    indices: relax.Expr
    table: np.ndarray  # [V, D]


def _embeddings(func: relax.Function, options: Int4Options) -> list[_Embedding]:
    if not options.include_embeddings:
        return []
    take = tvm.ir.Op.get("relax.take")
    found = []
    for block in func.body.blocks:
        for b in block.bindings:
            v = b.value
            if not (isinstance(v, relax.Call) and v.op.same_as(take) and isinstance(v.args[0], GenericConst)
                    and v.attrs.axis is not None and int(v.attrs.axis) == 0 and v.args[1].ty.shape is not None
                    and str(v.args[1].ty.dtype).startswith(("int", "uint"))):
                continue
            table = v.args[0].value.numpy()
            if table.ndim != 2 or table.dtype != np.float32 or table.size < options.min_elements \
                    or table.shape[1] % 32:
                continue
            found.append(_Embedding(b.var, v.args[1], table))
    return found


def _group_for(k: int, preferred: int) -> int:
    return next(g for g in (preferred, *sorted(GROUP_SIZES, reverse=True)) if k % g == 0)


def _uses(func: relax.Function) -> dict:
    counts: dict = {}

    def visit(e):
        if isinstance(e, relax.Var):
            counts[e] = counts.get(e, 0) + 1

    for block in func.body.blocks:
        for b in block.bindings:
            relax.analysis.post_order_visit(b.value, visit)
    relax.analysis.post_order_visit(func.body.body, visit)
    return counts


def _producers(func: relax.Function) -> dict:
    return {b.var: b.value for block in func.body.blocks for b in block.bindings}


_NORMS = ("relax.nn.layer_norm", "relax.nn.rms_norm")


def _per_channel_const(expr, k: int):
    if not isinstance(expr, GenericConst):
        return None
    arr = expr.value.numpy()
    if arr.ndim == 0 or arr.shape[-1] != k or arr.size != k or arr.dtype != np.float32:
        return None
    return arr


def _foldable(value, k: int) -> bool:
    """``value`` is ``y * c`` or a last-axis layer/RMS norm, with per-channel constant factors."""
    if not isinstance(value, relax.Call) or not isinstance(value.op, tvm.ir.Op):
        return False
    if value.op.name == "relax.multiply":
        return _per_channel_const(value.args[1], k) is not None
    if value.op.name in _NORMS and [int(a) for a in value.attrs.axes] in ([-1], [len(value.ty.shape) - 1]):
        return all(_per_channel_const(a, k) is not None for a in value.args[1:])
    return False


@tvm.transform.module_pass(opt_level=0, name="QuantizeInt4")
class QuantizeInt4:
    def __init__(self, target, options: Int4Options | None = None, calibration: dict | None = None):
        self.target, self.options, self.calibration = target, options or Int4Options(), calibration
        self.notes: list[str] = []
        self.substitutions: list[tuple[np.ndarray, np.ndarray]] = []  # (float constant, effective values)

    def transform_module(self, mod, _ctx):
        self.substitutions = []
        func = mod["main"]
        cands = _candidates(func, self.options)
        embeds = _embeddings(func, self.options)
        if not cands and not embeds:
            self.notes.append("int4: no matmul with a constant weight large enough to quantize")
            return mod
        acts = self._activations(mod, cands) if self.calibration is not None and cands else None
        weights, scales, folds = self._plan(func, cands, acts)
        for e in embeds:
            weights[e.var] = quantize(e.table, _group_for(e.table.shape[1], self.options.group), self.options.symmetric)
        quantized = _rewrite(mod, cands, embeds, weights, scales, folds, self.target)
        self._record_substitutions(cands, embeds, weights, scales)
        self._report(mod, quantized, cands, embeds, weights, scales, folds)
        return quantized

    def _record_substitutions(self, cands, embeds, weights, scales):
        """``W·diag(s)`` quantized, fed ``x / s``, computes ``x · (dequant / s)ᵀ``: that is the
        float weight the quantized model stands for, whatever AWQ folded where."""
        for c in cands:
            s = scales.get(c.x)
            w = weights[c.var].dequantize()
            self.substitutions.append((c.weight, np.ascontiguousarray((w / s if s is not None else w).T)))
        for e in embeds:
            self.substitutions.append((e.table, weights[e.var].dequantize()))

    # -- planning -------------------------------------------------------------------------

    def _activations(self, mod, cands) -> dict:
        flat = relax.transform.ToNonDataflow()(mod)
        flat_cands = _candidates(flat["main"], self.options)
        xs = list(dict.fromkeys(c.x for c in flat_cands))
        observed = tvm.IRModule(dict(flat.functions_items()))
        observed["main"] = observe.with_observed(flat["main"], xs)
        _, extras = observe.run(observed, observe.samples(flat["main"], self.calibration), extra=len(xs))
        by_flat = {x: np.concatenate([awq.subsample(e[i]) for e in extras]) for i, x in enumerate(xs)}
        # the flat module's candidates are the original ones, in the same order
        return {c.x: by_flat[f.x] for c, f in zip(cands, flat_cands)}

    def _plan(self, func, cands, acts):
        opts = self.options
        weights, scales, folds = {}, {}, {}
        groups: dict = {}
        for c in cands:
            groups.setdefault(c.x, []).append(c)
        uses, producers = _uses(func), _producers(func)
        for x, members in groups.items():
            k = members[0].weight.shape[0]
            g = _group_for(k, opts.group)
            mats = [c.weight.T.astype(np.float32) for c in members]  # [N, K]
            if acts is None:
                for c, w in zip(members, mats):
                    weights[c.var] = quantize(w, g, opts.symmetric)
                continue
            xa = acts[x]
            s, alpha = awq.search_scale(xa, mats, g, opts.symmetric)
            logger.info("AWQ: %d linear(s) on %s: alpha=%.2f", len(members), x.name, alpha)
            scales[x] = s
            producer = producers.get(x)
            if (isinstance(x, relax.DataflowVar) and uses.get(x, 0) == len(members)
                    and _foldable(producer, k)):
                folds[x] = s
            for c, w in zip(members, mats):
                ws = w * s
                clip = awq.search_clip(xa / s, ws, g, opts.symmetric)
                weights[c.var] = quantize(ws, g, opts.symmetric, clip=clip)
        return weights, scales, folds

    # -- report ---------------------------------------------------------------------------

    def _report(self, mod, quantized, cands, embeds, weights, scales, folds):
        before = sum(c.weight.nbytes for c in cands) + sum(e.table.nbytes for e in embeds)
        after = sum(w.packed_bytes() for w in weights.values())
        method = "AWQ" if self.calibration is not None else "round-to-nearest"
        tables = f", {len(embeds)} embedding table(s)" if self.options.include_embeddings else ""
        head = "" if self.options.include_lm_head else " (LM head kept float)"
        self.notes.append(f"int4 ({method}, group {self.options.group}, "
                          f"{'symmetric' if self.options.symmetric else 'asymmetric'}): {len(cands)} matmul(s)"
                          f"{tables}{head}; weight bytes {before} -> {after} ({before / max(after, 1):.2f}x smaller)")
        if scales:
            self.notes.append(f"int4: AWQ scales on {len(scales)} input(s), {len(folds)} folded into a producer")
        try:
            feeds = self.calibration if self.calibration is not None else observe.random_feeds(mod["main"])
            args = observe.samples(mod["main"], feeds)
            host = _rewrite(mod, cands, embeds, weights, scales, folds, tvm.target.Target("llvm"))
            ref, _ = observe.run(mod, args)
            got, _ = observe.run(host, args)
            ref = np.concatenate([a.ravel() for r in ref for a in r]).astype(np.float64)
            got = np.concatenate([a.ravel() for r in got for a in r]).astype(np.float64)
            rel = np.linalg.norm(got - ref) / max(np.linalg.norm(ref), 1e-30)
            self.error = {"max_abs": float(np.abs(got - ref).max()), "relative_l2": float(rel)}
            self.notes.append(f"int4: output error vs float on {'calibration' if self.calibration is not None else 'random'}"
                              f" inputs: max abs {self.error['max_abs']:.4g}, relative L2 {rel:.4g}")
        except Exception as err:  # the report must not fail the compile
            self.notes.append(f"int4: output error not measured ({type(err).__name__}: {str(err).splitlines()[0][:200]})")


def _rewrite(mod, cands, embeds, weights, scales, folds, target):
    rewriter = _Rewriter(mod, cands, embeds, weights, scales, folds, target)
    rewriter.builder_.update_func(mod.get_global_var("main"), rewriter.visit_expr(mod["main"]))
    return rewriter.builder_.get()


@mutator
class _Rewriter(PyExprMutator):
    def __init__(self, mod, cands, embeds, weights, scales, folds, target):
        super().__init__(mod)
        self.cands = {c.var: c for c in cands}
        self.embeds = {e.var: e for e in embeds}
        self.weights, self.scales, self.folds, self.target = weights, scales, folds, target
        self.scaled: dict = {}

    def _emit(self, var, value):
        value = self.builder_.normalize(value)
        self.builder_.emit_normalized(relax.VarBinding(var, value))

    def visit_var_binding_(self, binding):
        var = binding.var
        if var in self.folds:  # x = y * c -> y * (c / s); norm(y, g, b) -> norm(y, g / s, b / s)
            value, inv = binding.value, 1.0 / self.folds[var]
            args = [self.visit_expr(value.args[0])] + [
                relax.const((a.value.numpy() * inv.reshape(a.value.numpy().shape)).astype(np.float32))
                for a in value.args[1:]]
            self._emit(var, relax.Call(value.op, args, value.attrs))
            return
        embed = self.embeds.get(var)
        if embed is not None:
            self._emit(var, emit_int4_take(self.builder_, self.visit_expr(embed.indices), self.weights[var],
                                           where=f"embedding {var.name}"))
            return
        cand = self.cands.get(var)
        if cand is None:
            return super().visit_var_binding_(binding)
        x = self.visit_expr(cand.x)
        if cand.x in self.scales and cand.x not in self.folds:
            if cand.x not in self.scaled:
                inv = relax.const((1.0 / self.scales[cand.x]).astype(np.float32))
                self.scaled[cand.x] = self.builder_.emit(relax.op.multiply(x, inv))
            x = self.scaled[cand.x]
        self._emit(var, emit_int4_matmul(self.builder_, x, self.weights[var], None, self.target,
                                         where=f"matmul {var.name}"))


def load_calibration(path: str | None) -> dict | None:
    """The calibration inputs of ``--calibration FILE.npz``, keyed by model input name."""
    if path is None:
        return None
    from edgec.errors import InputError

    try:
        with np.load(path) as data:
            return {name: data[name] for name in data.files}
    except Exception as err:
        raise InputError(f"cannot read calibration file {path}: {err}") from err
