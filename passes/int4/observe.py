"""Run a Relax module on the host for calibration: the activations that feed chosen matmuls,
and the model's outputs (for the float-vs-int4 error in the compile report)."""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax

from edgec.errors import InputError


def host_vm(mod: tvm.IRModule):
    with tvm.target.Target("llvm"):
        exe = tvm.compile(mod, "llvm")
    return relax.VirtualMachine(exe, tvm.cpu())


def _flatten(value) -> list[np.ndarray]:
    if hasattr(value, "numpy"):
        return [value.numpy()]
    return [a for v in value for a in _flatten(v)]


def samples(func: relax.Function, feeds: dict[str, np.ndarray]) -> list[list[np.ndarray]]:
    """Argument lists for ``func``; an array with one more axis than its parameter is a batch
    of samples along that axis."""
    names = [p.name for p in func.params]
    missing = [n for n in names if n not in feeds]
    if missing:
        raise InputError(f"calibration data lacks inputs {missing} (has {sorted(feeds)})")
    counts = {len(feeds[p.name]) for p in func.params if feeds[p.name].ndim == len(p.ty.shape) + 1}
    if len(counts) > 1:
        raise InputError(f"calibration inputs hold different numbers of samples: {sorted(counts)}")
    if not counts:
        return [[feeds[n] for n in names]]
    (count,) = counts
    return [[feeds[p.name][i] if feeds[p.name].ndim == len(p.ty.shape) + 1 else feeds[p.name]
             for p in func.params] for i in range(count)]


def random_feeds(func: relax.Function, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    feeds = {}
    for p in func.params:
        shape = [int(d) if isinstance(d, tvm.tirx.IntImm) else 1 for d in p.ty.shape]
        dtype = str(p.ty.dtype)
        feeds[p.name] = (rng.standard_normal(shape).astype(dtype) if dtype.startswith("float")
                         else np.zeros(shape, dtype))
    return feeds


def run(mod: tvm.IRModule, arg_lists, extra: int = 0):
    """Outputs of ``main`` per sample; with ``extra``, its last ``extra`` tuple fields separately."""
    vm = host_vm(mod)
    outs, extras = [], []
    for args in arg_lists:
        result = _flatten(vm["main"](*[tvm.runtime.tensor(np.ascontiguousarray(a)) for a in args]))
        outs.append(result[:len(result) - extra])
        extras.append(result[len(result) - extra:])
    return outs, extras


def with_observed(func: relax.Function, observed: list[relax.Var]) -> relax.Function:
    """``func`` returning ``(its result, *observed)``; ``func`` must hold no dataflow blocks."""
    body = func.body
    result = relax.Tuple([body.body, *observed])
    ret_ty = relax.TupleType([body.body.ty, *[v.ty for v in observed]])
    new = relax.Function(func.params, relax.SeqExpr(body.blocks, result), ret_ty, func.is_pure, func.attrs)
    return relax.BlockBuilder().normalize(new)
