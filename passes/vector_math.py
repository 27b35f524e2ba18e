"""Transcendental functions that vectorize on CPUs, with IEEE special values kept.

TVM lowers ``exp`` and ``erf`` to LLVM's ``llvm.exp``/``erff``, which have no vector form without
a vector math library: LLVM scalarizes them inside a vectorized loop, one libm call per lane.
In the example transformer, softmax and GELU spent 45% of the run in those calls. Here they are
written with arithmetic LLVM vectorizes (multiply-add, floor, integer shifts, selects):

* ``exp(x)``: ``x = n·ln2 + r`` with ``|r| ≤ ln2/2``, ``e^r`` by a degree-7 polynomial (the
  Cephes ``expf`` minimax coefficients: about 1 ulp), and ``2^n`` assembled in the exponent bits,
  split in two factors so that results down to the smallest subnormal come out right;
* ``erf(x)``: an odd Taylor polynomial for ``|x| < 0.5`` (relative accuracy where ``erf`` is
  small), else Abramowitz & Stegun 7.1.26, ``1 - t·poly(t)·e^{-x²}`` (absolute error 1.5e-7);
* ``sigmoid``, ``silu``, ``softmax`` and ``gelu`` from them.

NaN stays NaN, ``exp(+inf) = inf``, ``exp(-inf) = 0``, ``erf(±inf) = ±1``: the fuzzer compares
these against onnxruntime. float32 only; other dtypes keep TVM's lowering. CPU targets only
(GPUs have fast hardware ``exp``).
"""

from __future__ import annotations

import math

import tvm
from tvm import te, tirx, topi

_LOG2E = 1.4426950408889634
_LN2_HI, _LN2_LO = 0.693359375, -2.12194440e-4  # ln 2 split so that n·ln2_hi is exact
# e^r ≈ 1 + r + r²·(c0 + c1 r + ... + c5 r^5) on |r| ≤ ln2/2 (Cephes expf)
_EXP_POLY = (5.0000001201e-1, 1.6666665459e-1, 4.1665795894e-2, 8.3334519073e-3, 1.3981999507e-3,
             1.9875691500e-4)
_EXP_MAX, _EXP_MIN = 88.72283935546875, -103.97208404541016  # beyond: inf, and below the smallest subnormal
# erf for |x| ≥ 0.5 (Abramowitz & Stegun 7.1.26)
_AS_P = 0.3275911
_AS_A = (0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429)


def _f(value: float):
    return tirx.const(value, "float32")


def _horner(x, coefficients):
    acc = _f(coefficients[-1])
    for c in reversed(coefficients[:-1]):
        acc = acc * x + _f(c)
    return acc


def _pow2(n):
    """2^n for an integer-valued float32 ``n`` in [-126, 127], built in the exponent bits."""
    bits = (n.astype("int32") + tirx.const(127, "int32")) << tirx.const(23, "int32")
    return tirx.reinterpret("float32", bits)


def exp(x):
    """e^x for a float32 TIR expression.

    Intermediate values are shared Python objects, not ``Let`` bindings: MetaSchedule's flop
    counter rejects ``Let``, and LLVM removes the repeated subexpressions either way.
    """
    c = tirx.max(tirx.min(x, _f(_EXP_MAX)), _f(_EXP_MIN))
    n = tirx.floor(c * _f(_LOG2E) + _f(0.5))
    r = c - n * _f(_LN2_HI) - n * _f(_LN2_LO)
    half = tirx.floor(n * _f(0.5))  # 2^n = 2^half · 2^(n-half): each factor a normal float
    value = (_f(1.0) + r + r * r * _horner(r, _EXP_POLY)) * _pow2(half) * _pow2(n - half)
    value = tirx.Select(x > _f(_EXP_MAX), _f(math.inf), value)
    return tirx.Select(tirx.isnan(x), x, value)  # NaN: the clamp would have made it a number


def erf(x):
    """erf(x) for a float32 TIR expression."""
    a, x2 = tirx.abs(x), x * x
    # 2/√π · (x - x³/3 + x⁵/10 - x⁷/42 + x⁹/216 - x¹¹/1320)
    small = x * _horner(x2, [c * 2 / math.sqrt(math.pi) for c in (1, -1 / 3, 1 / 10, -1 / 42, 1 / 216, -1 / 1320)])
    t = _f(1.0) / (_f(1.0) + _f(_AS_P) * a)
    large = (_f(1.0) - t * _horner(t, _AS_A) * exp(-x2)) * tirx.Select(x < _f(0.0), _f(-1.0), _f(1.0))
    return tirx.Select(a < _f(0.5), small, large)  # NaN: a < 0.5 is false, and large is NaN


def _sigmoid(x):
    return _f(1.0) / (_f(1.0) + exp(-x))


def _elementwise(fn, name):
    def legalize(bb, call):
        x = call.args[0]
        if x.ty.dtype != "float32":
            return _stock(bb, call)
        return bb.call_te(lambda t: te.compute(t.shape, lambda *i: fn(t(*i)), name=name, tag="elemwise"), x,
                          primfunc_name_hint=name)

    return legalize


def _softmax_legalize(bb, call):
    x = call.args[0]
    if x.ty.dtype != "float32":
        return _stock(bb, call)

    def softmax(t):
        axis = int(call.attrs.axis) % len(t.shape)
        peak = topi.max(t, axis=axis, keepdims=True)
        e = te.compute(t.shape, lambda *i: exp(t(*i) - peak(*_keep(i, axis))), name="softmax_exp")
        total = topi.sum(e, axis=axis, keepdims=True)
        return te.compute(t.shape, lambda *i: e(*i) / total(*_keep(i, axis)), name="softmax_norm")

    return bb.call_te(softmax, x, primfunc_name_hint="softmax")


def _keep(index, axis):
    return [tirx.const(0, str(index[axis].ty)) if k == axis else v for k, v in enumerate(index)]


def _stock(bb, call):
    return call.op.get_attr("FLegalize")(bb, call)


def _gelu(x):
    return _f(0.5) * x * (_f(1.0) + erf(x * _f(1 / math.sqrt(2))))


LEGALIZE = {
    "relax.nn.gelu": _elementwise(_gelu, "gelu"),
    "relax.exp": _elementwise(exp, "exp"),
    "relax.erf": _elementwise(erf, "erf"),
    "relax.sigmoid": _elementwise(_sigmoid, "sigmoid"),
    "relax.nn.silu": _elementwise(lambda x: x * _sigmoid(x), "silu"),
    "relax.nn.softmax": _softmax_legalize,
}


def legalize_map(target: tvm.target.Target) -> dict:
    """The legalizations above for CPU targets; none for GPUs."""
    return LEGALIZE if target.kind.name == "llvm" else {}
