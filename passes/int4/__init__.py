"""int4 weight matmul: the operator, its kernels and its weight packing."""

from edgec.passes.int4.op import Int4Error, check_weight, emit_int4_matmul
from edgec.passes.int4.packing import GROUP_SIZES, QuantizedWeight, quantize

__all__ = ["GROUP_SIZES", "Int4Error", "QuantizedWeight", "check_weight", "emit_int4_matmul", "quantize"]
