"""Lift the large constants of ``main`` into trailing parameters, so weights live outside the code.

Run after every pass that rewrites weights (folding, layout, quantization): the weights are then
in their final form. ``main`` keeps its ``num_input`` attribute (the user inputs); the lifted
weights follow in order, and :func:`lifted_weights` returns their values for the artifact.
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax
from tvm.relax.expr_functor import PyExprMutator, mutator

# Scalars and tiny tables stay in the executable's constant pool; they are code, not weights.
MIN_LIFTED_BYTES = 256
WEIGHTS_ATTR = "edgec.weight_names"


@mutator
class _ConstantLifter(PyExprMutator):
    def __init__(self, mod):
        super().__init__(mod)
        self.params: list[relax.Var] = []
        self.values: list[np.ndarray] = []
        self._seen: dict = {}

    def visit_generic_const_(self, op):
        value = op.value.numpy()
        if value.nbytes < MIN_LIFTED_BYTES:
            return op
        # one weight read twice is one parameter
        if op not in self._seen:
            self._seen[op] = relax.Var(f"w{len(self.params)}", op.ty)
            self.params.append(self._seen[op])
            self.values.append(value)
        return self._seen[op]


@tvm.transform.module_pass(opt_level=0, name="LiftWeights")
class LiftWeights:
    """Turn ``main``'s large constants into parameters after the user inputs."""

    def __init__(self, func_name: str = "main"):
        self.func_name = func_name
        self.weights: list[np.ndarray] = []

    def transform_module(self, mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        func = mod[self.func_name]
        lifter = _ConstantLifter(mod)
        body = lifter.visit_expr(func.body)
        if not lifter.params:
            self.weights = []
            return mod
        new_func = relax.Function(
            list(func.params) + lifter.params, body, func.ret_ty, func.is_pure, func.attrs
        ).with_attr(WEIGHTS_ATTR, [p.name for p in lifter.params])
        self.weights = lifter.values
        out = tvm.IRModule(dict(mod.functions), attrs=mod.attrs)
        out[self.func_name] = new_func
        return out
