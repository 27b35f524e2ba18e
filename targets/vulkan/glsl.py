"""Lowered device TIR → one GLSL 4.50 compute shader per kernel.

The input is what ``tirx.build`` hands a device codegen: flattened buffers addressed through
pointer parameters, ``thread_extent`` attributes for the thread and block indices, shared and
local allocations, and ``Bind`` statements for common subexpressions. Each pointer parameter
becomes a std430 storage buffer (binding = its position among the pointers); each scalar
parameter becomes a push constant. Vectors (``Ramp``/``Broadcast`` loads and stores) are
assembled lane by lane, which keeps every storage buffer scalar-typed and std430-legal.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field

import tvm
from tvm import tirx

from edgec.errors import CompileError

_SCALAR = {
    ("float", 32): "float", ("float", 16): "float16_t", ("float", 64): "double",
    ("int", 32): "int", ("int", 64): "int64_t", ("int", 16): "int16_t", ("int", 8): "int8_t",
    ("uint", 32): "uint", ("uint", 64): "uint64_t", ("uint", 16): "uint16_t", ("uint", 8): "uint8_t",
    ("bool", 1): "bool",
}
_VECTOR_PREFIX = {
    "float": "vec", "float16_t": "f16vec", "double": "dvec", "int": "ivec", "uint": "uvec", "bool": "bvec",
    "int64_t": "i64vec", "uint64_t": "u64vec", "int16_t": "i16vec", "uint16_t": "u16vec",
    "int8_t": "i8vec", "uint8_t": "u8vec",
}
#: device feature each GLSL scalar type needs for arithmetic (checked by the runtime at load)
_ARITH_FEATURE = {"float16_t": "shaderFloat16", "double": "shaderFloat64", "int64_t": "shaderInt64",
                  "uint64_t": "shaderInt64", "int16_t": "shaderInt16", "uint16_t": "shaderInt16",
                  "int8_t": "shaderInt8", "uint8_t": "shaderInt8"}
_STORAGE_FEATURE = {1: "storageBuffer8BitAccess", 2: "storageBuffer16BitAccess"}

#: C math names TVM's default intrinsic lowering emits, and TIR op names, to GLSL builtins
_MATH = {
    "exp": "exp", "exp2": "exp2", "log": "log", "log2": "log2", "sqrt": "sqrt", "rsqrt": "inversesqrt",
    "tanh": "tanh", "sin": "sin", "cos": "cos", "tan": "tan", "asin": "asin", "acos": "acos",
    "atan": "atan", "sinh": "sinh", "cosh": "cosh", "asinh": "asinh", "acosh": "acosh", "atanh": "atanh",
    "floor": "floor", "ceil": "ceil", "trunc": "trunc", "round": "roundEven", "nearbyint": "roundEven",
    "fabs": "abs", "abs": "abs", "pow": "pow", "atan2": "atan", "fma": "fma", "isnan": "isnan",
    "isinf": "isinf", "fmin": "min", "fmax": "max", "popcount": "bitCount", "erf": "edgec_erf",
    "log10": "edgec_log10", "log1p": "edgec_log1p", "expm1": "edgec_expm1", "fmod": "edgec_fmod",
    "sigmoid": "edgec_sigmoid", "isfinite": "edgec_isfinite",
}
#: GLSL builtins that take double arguments; other math on float64 is computed in float32
_DOUBLE_BUILTINS = {"sqrt", "inversesqrt", "abs", "floor", "ceil", "trunc", "roundEven", "min", "max", "fma",
                    "isnan", "isinf", "edgec_fmod", "edgec_isfinite"}
_FLOAT_HELPERS = {
    # Abramowitz & Stegun 7.1.26 is too coarse for GELU tests; this is W. J. Cody-style
    # erf via erfc's rational fit (max abs error ~1.2e-7), evaluated in float.
    "edgec_erf": """T edgec_erf(T x) {
  float ax = abs(float(x));
  float t = 1.0 / (1.0 + 0.5 * ax);
  float y = t * exp(-ax * ax - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 +
            t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 +
            t * (-0.82215223 + t * 0.17087277)))))))));
  return T(sign(float(x)) * (1.0 - y));
}""",
    "edgec_log10": "T edgec_log10(T x) { return T(log(float(x)) * 0.43429448190325176); }",
    "edgec_log1p": "T edgec_log1p(T x) { return T(log(1.0 + float(x))); }",
    "edgec_expm1": "T edgec_expm1(T x) { return T(exp(float(x)) - 1.0); }",
    "edgec_fmod": "T edgec_fmod(T a, T b) { return a - b * trunc(a / b); }",
    "edgec_sigmoid": "T edgec_sigmoid(T x) { return T(1.0 / (1.0 + exp(-float(x)))); }",
    "edgec_isfinite": "bool edgec_isfinite(T x) { return !isnan(x) && !isinf(x); }",
}
_INT_HELPERS = {
    "edgec_floordiv": """T edgec_floordiv(T a, T b) {
  T q = a / b;
  T r = a - q * b;
  return (r != T(0) && ((r < T(0)) != (b < T(0)))) ? q - T(1) : q;
}""",
    "edgec_floormod": """T edgec_floormod(T a, T b) {
  T r = a - (a / b) * b;
  return (r != T(0) && ((r < T(0)) != (b < T(0)))) ? r + b : r;
}""",
}
_BINARY = {
    tirx.Add: "+", tirx.Sub: "-", tirx.Mul: "*", tirx.EQ: "==", tirx.NE: "!=", tirx.LT: "<",
    tirx.LE: "<=", tirx.GT: ">", tirx.GE: ">=", tirx.And: "&&", tirx.Or: "||",
    tirx.LShift: "<<", tirx.RShift: ">>", tirx.BitwiseAnd: "&", tirx.BitwiseOr: "|", tirx.BitwiseXor: "^",
}
_VECTOR_COMPARE = {tirx.EQ: "equal", tirx.NE: "notEqual", tirx.LT: "lessThan", tirx.LE: "lessThanEqual",
                   tirx.GT: "greaterThan", tirx.GE: "greaterThanEqual"}
_BITWISE_OPS = {"bitwise_and": "&", "bitwise_or": "|", "bitwise_xor": "^", "shift_left": "<<",
                "shift_right": ">>"}
_THREAD_BUILTIN = {"blockIdx": "gl_WorkGroupID", "threadIdx": "gl_LocalInvocationID"}
#: push constant holding the true 1-D grid size, for kernels whose grid may be folded into 2-D
GRID_PUSH_NAME = "edgec_grid_x"


@dataclass
class ScalarArg:
    name: str
    dtype: str
    offset: int  # byte offset in the push-constant block
    size: int


@dataclass
class Kernel:
    """One compute shader and what the runtime needs to launch it."""

    name: str
    source: str
    num_buffers: int
    scalars: list[ScalarArg]
    launch_tags: list[str]
    local_size: tuple[int, int, int]
    features: set[str] = field(default_factory=set)
    grid_push_offset: int = -1  # where the runtime writes the 1-D grid size; -1: grid is never folded
    #: the kernel's parameters in call order: ("buffer", binding) or ("scalar", index into scalars)
    params: list[tuple[str, int]] = field(default_factory=list)


def dtype_of(node) -> "tvm_ffi.dtype":  # noqa: F821  (the tvm-ffi dtype type)
    return node.ty.dtype


def glsl_type(dtype) -> str:
    dtype = tvm.DataType(str(dtype))
    code = {0: "int", 1: "uint", 2: "float"}.get(dtype.type_code)
    if str(dtype).startswith("bool"):
        code = "bool"
    base = _SCALAR.get((code, dtype.bits if code != "bool" else 1))
    if base is None or dtype.lanes > 4:
        raise CompileError(f"the Vulkan backend cannot hold values of type {dtype} in a shader")
    return base if dtype.lanes == 1 else f"{_VECTOR_PREFIX[base]}{dtype.lanes}"


def _storage_scalar(dtype: str) -> str:
    """GLSL element type of a storage buffer or shared array of ``dtype`` (bool is stored in a byte)."""
    return "uint8_t" if dtype == "bool" else glsl_type(dtype)


class _Emitter:
    def __init__(self, func: tirx.PrimFunc, name: str, narrow_int64: bool = False):
        self.func, self.name = func, name
        # without shaderInt64, 64-bit integers (TIR's index type) are computed in 32 bits and
        # int64 tensors are stored as (low, high) word pairs: exact while values fit in int32
        self.narrow_int64 = narrow_int64
        self.lines: list[str] = []
        self.indent = 1
        self.names: dict = {}
        self.used_names: set[str] = set()
        self.buffers: dict = {}  # pointer var or Buffer -> (glsl expr of the array, storage dtype)
        self.shared_decls: list[str] = []
        self.local_decls: list[str] = []
        self.types: set[str] = set()
        self.storage_bits: set[int] = set()
        self.helpers: dict[tuple[str, str], str] = {}
        self.local_size = [1, 1, 1]
        self.local_size_set = [False, False, False]
        self.launch_extents: dict[str, int] = {}
        self.pending: list[str] = []  # statements hoisted out of expressions (Let)
        self.fold_grid = False
        self.subgroup = False

    # -- names and types --------------------------------------------------------------------

    def fresh(self, hint: str) -> str:
        base = "".join(c if c.isalnum() else "_" for c in hint) or "v"
        if base[0].isdigit() or base.startswith("gl_"):
            base = "v_" + base
        name, i = base, 0
        while name in self.used_names:
            i += 1
            name = f"{base}_{i}"
        self.used_names.add(name)
        return name

    def bind(self, var, hint: str | None = None) -> str:
        name = self.fresh(hint or var.name)
        self.names[var] = name
        return name

    def ty(self, dtype) -> str:
        t = glsl_type(self.narrowed(dtype))
        self.types.add(t)
        return t

    def narrowed(self, dtype) -> str:
        text = str(dtype)
        if self.narrow_int64 and text.startswith(("int64", "uint64")):
            return text.replace("64", "32", 1)
        return text

    # -- statements -------------------------------------------------------------------------

    def line(self, text: str) -> None:
        for pending in self.pending:
            self.lines.append("  " * self.indent + pending)
        self.pending = []
        self.lines.append("  " * self.indent + text)

    def stmt(self, s) -> None:
        method = getattr(self, "stmt_" + type(s).__name__, None)
        if method is None:
            raise CompileError(f"Vulkan codegen: kernel {self.name} has an unsupported statement {type(s).__name__}")
        method(s)

    def stmt_SeqStmt(self, s):
        for child in s.seq:
            self.stmt(child)

    def stmt_AttrStmt(self, s):
        if s.attr_key == "thread_extent":
            tag = s.node.thread_tag
            kind, _, axis = tag.partition(".")
            if kind not in _THREAD_BUILTIN or axis not in "xyz":
                raise CompileError(f"Vulkan codegen: kernel {self.name} binds unknown thread axis {tag}")
            if kind == "threadIdx":
                if not isinstance(s.value, tirx.IntImm):
                    raise CompileError(f"Vulkan codegen: kernel {self.name} has a symbolic workgroup size ({tag})")
                extent, i = int(s.value.value), "xyz".index(axis)
                if self.local_size_set[i] and self.local_size[i] != extent:
                    raise CompileError(f"Vulkan codegen: kernel {self.name} launches {tag} with extents "
                                       f"{self.local_size[i]} and {extent}; a shader has one workgroup size")
                self.local_size[i], self.local_size_set[i] = extent, True
            var = s.node.var
            if var not in self.names:  # else: the same axis launched again (a second scope of one kernel)
                name = self.bind(var)
                t = self.ty(dtype_of(var))
                if tag == "blockIdx.x" and self.fold_grid:
                    # a 1-D grid wider than the device's x limit is dispatched as x*y workgroups
                    self.line(f"{t} {name} = {t}(gl_WorkGroupID.x + gl_WorkGroupID.y * gl_NumWorkGroups.x);")
                    self.line(f"if ({name} >= {t}(pc.{GRID_PUSH_NAME})) {{ return; }}")
                else:
                    self.line(f"{t} {name} = {t}({_THREAD_BUILTIN[kind]}.{axis});")
        self.stmt(s.body)

    def stmt_Bind(self, s):
        value = self.expr(s.value)
        name = self.bind(s.var)
        self.line(f"{self.ty(dtype_of(s.var))} {name} = {value};")

    def stmt_LetStmt(self, s):  # older TIR spelling, kept for robustness
        self.stmt_Bind(s)
        self.stmt(s.body)

    def stmt_DeclBuffer(self, s):
        buf = s.buffer
        data = getattr(s, "data", None)
        if data is not None and data in self.buffers:
            self.buffers[buf] = self.buffers[data]
        elif buf.data in self.buffers:
            self.buffers[buf] = self.buffers[buf.data]
        else:
            raise CompileError(f"Vulkan codegen: kernel {self.name} declares buffer {buf.name} on unknown memory")

    def stmt_AllocBuffer(self, s):
        buf = s.buffer
        scope = buf.scope()
        size = 1
        for dim in buf.shape:
            if not isinstance(dim, tirx.IntImm):
                raise CompileError(f"Vulkan codegen: kernel {self.name} allocates {buf.name} with symbolic size")
            size *= int(dim.value)
        elem = _storage_scalar(self.narrowed(buf.dtype))
        self.types.add(elem)
        name = self.fresh(buf.name)
        self.buffers[buf] = (name, self.narrowed(buf.dtype))
        if scope.startswith("shared"):
            self.shared_decls.append(f"shared {elem} {name}[{size}];")
        elif scope in ("local", "", "global") or scope.startswith("local"):
            self.line(f"{elem} {name}[{size}];")
        else:
            raise CompileError(f"Vulkan codegen: kernel {self.name} uses memory scope {scope!r}")

    def stmt_BufferStore(self, s):
        array, elem = self._array(s.buffer)
        index = s.indices[0] if len(s.indices) == 1 else None
        if index is None:
            raise CompileError(f"Vulkan codegen: kernel {self.name} stores to an unflattened buffer")
        value_dtype = tvm.DataType(str(dtype_of(s.value)))
        value = self.expr(s.value)
        if value_dtype.lanes == 1 and isinstance(index, tirx.Ramp) is False:
            self._store(array, elem, self.index(index), value)
            return
        tmp = self.fresh("vstore")
        self.line(f"{self.ty(value_dtype)} {tmp} = {value};")
        for lane, idx in enumerate(self._lanes(index, value_dtype.lanes)):
            self._store(array, elem, idx, f"{tmp}[{lane}]")

    def _store(self, array: str, elem: str, index: str, value: str) -> None:
        if elem.endswith("_pair"):  # narrowed int64: low word, then the sign (or zero) extension
            word = "int" if elem.startswith("int") else "uint"
            tmp = self.fresh("wide")
            self.line(f"{word} {tmp} = {word}({value});")
            self.line(f"{array}[({index}) * 2] = {tmp};")
            high = f"({tmp} < 0 ? -1 : 0)" if word == "int" else "0u"
            self.line(f"{array}[({index}) * 2 + 1] = {high};")
            return
        self.line(f"{array}[{index}] = {self._to_storage(value, elem)};")

    def stmt_IfThenElse(self, s):
        self.line(f"if ({self.expr(s.condition)}) {{")
        self.block(s.then_case)
        if s.else_case is not None:
            self.line("} else {")
            self.block(s.else_case)
        self.line("}")

    def stmt_For(self, s):
        var_t = self.ty(dtype_of(s.loop_var))
        lo, extent = self.expr(s.min), self.expr(s.extent)
        name = self.bind(s.loop_var)
        end = extent if _is_zero(s.min) else f"({lo}) + ({extent})"
        self.line(f"for ({var_t} {name} = {lo}; {name} < {end}; ++{name}) {{")
        self.block(s.body)
        self.line("}")

    def stmt_While(self, s):
        # the condition is re-evaluated each iteration, so nothing may be hoisted out of it
        cond = self.expr(s.condition)
        if self.pending:
            raise CompileError(f"Vulkan codegen: kernel {self.name} has a let binding in a while condition")
        self.line(f"while ({cond}) {{")
        self.block(s.body)
        self.line("}")

    def stmt_Break(self, s):
        self.line("break;")

    def stmt_Continue(self, s):
        self.line("continue;")

    def stmt_Evaluate(self, s):
        v = s.value
        if isinstance(v, tvm.ir.expr.Call) and v.op.name.endswith(".tvm_storage_sync"):
            scope = v.args[0].value
            if scope.startswith("shared"):
                self.line("memoryBarrierShared();")
                self.line("barrier();")
            elif scope == "warp":
                # warp-synchronous reduction steps run in divergent branches, where barrier() is
                # undefined; the subgroup barrier is the warp sync TVM means (warp = subgroup)
                self.subgroup = True
                self.line("subgroupMemoryBarrierShared();")
                self.line("subgroupBarrier();")
            else:
                raise CompileError(f"Vulkan codegen: kernel {self.name} needs a {scope!r} barrier")
            return
        if isinstance(v, (tirx.IntImm,)):
            return
        self.line(f"{self.expr(v)};")

    def stmt_AssertStmt(self, s):
        pass  # shaders cannot report; the host side checked shapes already

    def block(self, s) -> None:
        self.indent += 1
        self.stmt(s)
        self.indent -= 1

    # -- buffers ----------------------------------------------------------------------------

    def _array(self, buf):
        for key in (buf, buf.data):
            if key in self.buffers:
                return self.buffers[key]
        raise CompileError(f"Vulkan codegen: kernel {self.name} accesses {buf.name}, which is not a parameter")

    def _to_storage(self, value: str, elem: str) -> str:
        if elem == "bool":
            return f"uint8_t({value})"
        return value

    def _load(self, array: str, elem: str, index: str, want) -> str:
        if elem.endswith("_pair"):
            return self._from_storage(f"{array}[({index}) * 2]", elem.split("_")[0].replace("64", "32"), want)
        return self._from_storage(f"{array}[{index}]", elem, want)

    def _from_storage(self, access: str, elem: str, want) -> str:
        want_s = self.narrowed(want)
        if elem == "bool":
            return f"({access} != uint8_t(0))"
        if want_s != elem:
            return f"{self.ty(want)}({access})"
        return access

    def index(self, e) -> str:
        text = self.expr(e)
        return text if self.narrowed(dtype_of(e)) == "int32" else f"int({text})"

    def _lanes(self, index, lanes: int) -> list[str]:
        if isinstance(index, tirx.Ramp):
            base = self.expr(index.base)
            stride = self.expr(index.stride)
            conv = (lambda t: t) if str(dtype_of(index.base)) == "int32" else (lambda t: f"int({t})")
            return [conv(f"({base}) + {i} * ({stride})") if i else conv(base) for i in range(lanes)]
        if isinstance(index, tirx.Broadcast):
            return [self.index(index.value)] * lanes
        vec = self.expr(index)
        return [f"int({vec}[{i}])" for i in range(lanes)]

    # -- expressions ------------------------------------------------------------------------

    def expr(self, e) -> str:
        op = _BINARY.get(type(e))
        if op is not None:
            return self._binary(e, op)
        method = getattr(self, "expr_" + type(e).__name__, None)
        if method is None:
            raise CompileError(f"Vulkan codegen: kernel {self.name} has an unsupported expression {type(e).__name__}")
        return method(e)

    def expr_Var(self, e):
        if e not in self.names:
            raise CompileError(f"Vulkan codegen: kernel {self.name} uses {e.name} before it is defined")
        return self.names[e]

    def expr_IntImm(self, e):
        dtype = self.narrowed(dtype_of(e))
        v = int(e.value)
        if dtype != str(dtype_of(e)):  # narrowed: saturate (only reduction identities fall outside)
            v = max(-2**31, min(2**31 - 1, v)) if dtype == "int32" else max(0, min(2**32 - 1, v))
        if dtype == "bool":
            return "true" if v else "false"
        if dtype == "int32":
            return str(v) if v >= 0 else f"({v})" if v > -2**31 else "(-2147483647 - 1)"
        if dtype == "uint32":
            return f"{v}u"
        if dtype == "int64":
            return f"{v}l" if v >= 0 else f"({v}l)" if v > -2**63 else "(-9223372036854775807l - 1l)"
        if dtype == "uint64":
            return f"{v}ul"
        return f"{self.ty(dtype)}({v})"

    def expr_FloatImm(self, e):
        dtype = str(dtype_of(e))
        v = float(e.value)
        if math.isnan(v) or math.isinf(v):
            bits = struct.unpack("<I", struct.pack("<f", v))[0]
            text = f"uintBitsToFloat({bits}u)"
        else:
            text = repr(v) if dtype == "float64" else _float32_literal(v)
            if dtype == "float64":
                text += "lf"
        return text if dtype == "float32" else f"{self.ty(dtype)}({text})"

    def expr_StringImm(self, e):
        raise CompileError(f"Vulkan codegen: kernel {self.name} uses a string value")

    def expr_Cast(self, e):
        to = dtype_of(e)
        src = dtype_of(e.value)
        value = self.expr(e.value)
        if str(to).startswith("bool") and not str(src).startswith("bool"):
            zero = f"{self.ty(src)}(0)"
            if tvm.DataType(str(to)).lanes > 1:
                return f"notEqual({value}, {zero})"
            return f"({value} != {zero})"
        return f"{self.ty(to)}({value})"

    def _binary(self, e, op: str) -> str:
        a, b = self.expr(e.a), self.expr(e.b)
        lanes = tvm.DataType(str(dtype_of(e.a))).lanes
        if str(dtype_of(e.a)).startswith("bool") and op in ("&", "|", "^"):
            if lanes > 1:
                return f"notEqual({a}, {b})" if op == "^" else \
                    f"{self.ty(dtype_of(e))}(uvec{lanes}({a}) {op} uvec{lanes}({b}))"
            return f"({a} {op * 2} {b})"  # GLSL's logical &&, ||, ^^
        if lanes > 1 and type(e) in _VECTOR_COMPARE:
            return f"{_VECTOR_COMPARE[type(e)]}({a}, {b})"
        return f"({a} {op} {b})"

    def expr_Div(self, e):
        return self._binary(e, "/")

    def expr_Mod(self, e):
        t = dtype_of(e)
        a, b = self.expr(e.a), self.expr(e.b)
        if tvm.DataType(str(t)).type_code == 2:
            return f"{self._helper('edgec_fmod', t)}({a}, {b})"
        return f"(({a}) - (({a}) / ({b})) * ({b}))"

    def expr_FloorDiv(self, e):
        t = dtype_of(e)
        a, b = self.expr(e.a), self.expr(e.b)
        if tvm.DataType(str(t)).type_code == 2:
            return f"floor({a} / {b})"
        if tvm.DataType(str(t)).type_code == 1:
            return f"({a} / {b})"
        if _is_positive_const(e.b) and _provably_nonneg(e.a):
            return f"({a} / {b})"
        return f"{self._helper('edgec_floordiv', t)}({a}, {b})"

    def expr_FloorMod(self, e):
        t = dtype_of(e)
        a, b = self.expr(e.a), self.expr(e.b)
        if tvm.DataType(str(t)).type_code == 2:
            return f"(({a}) - floor(({a}) / ({b})) * ({b}))"
        if tvm.DataType(str(t)).type_code == 1 or (_is_positive_const(e.b) and _provably_nonneg(e.a)):
            return f"(({a}) - (({a}) / ({b})) * ({b}))"
        return f"{self._helper('edgec_floormod', t)}({a}, {b})"

    def expr_Min(self, e):
        return f"min({self.expr(e.a)}, {self.expr(e.b)})"

    def expr_Max(self, e):
        return f"max({self.expr(e.a)}, {self.expr(e.b)})"

    def expr_Not(self, e):
        lanes = tvm.DataType(str(dtype_of(e))).lanes
        return f"not({self.expr(e.a)})" if lanes > 1 else f"(!{self.expr(e.a)})"

    def expr_BitwiseNot(self, e):
        return f"(~{self.expr(e.a)})"

    def expr_Select(self, e):
        cond, t, f = self.expr(e.condition), self.expr(e.true_value), self.expr(e.false_value)
        if tvm.DataType(str(dtype_of(e))).lanes > 1:
            return f"mix({f}, {t}, {cond})"
        return f"({cond} ? {t} : {f})"

    def expr_Let(self, e):
        value = self.expr(e.value)
        name = self.bind(e.var)
        self.pending.append(f"{self.ty(dtype_of(e.var))} {name} = {value};")
        return self.expr(e.body)

    def expr_Broadcast(self, e):
        return f"{self.ty(dtype_of(e))}({self.expr(e.value)})"

    def expr_Ramp(self, e):
        lanes = tvm.DataType(str(dtype_of(e))).lanes
        base, stride = self.expr(e.base), self.expr(e.stride)
        parts = [base] + [f"{base} + {i} * {stride}" for i in range(1, lanes)]
        return f"{self.ty(dtype_of(e))}({', '.join(parts)})"

    def expr_Shuffle(self, e):
        vecs = [self.expr(v) for v in e.vectors]
        lane_counts = [tvm.DataType(str(dtype_of(v))).lanes for v in e.vectors]
        flat = []
        for v, n in zip(vecs, lane_counts):
            flat.extend([v] if n == 1 else [f"{v}[{i}]" for i in range(n)])
        picked = [flat[int(i.value)] for i in e.indices]
        return picked[0] if len(picked) == 1 else f"{self.ty(dtype_of(e))}({', '.join(picked)})"

    def expr_BufferLoad(self, e):
        array, elem = self._array(getattr(e, "buffer", None) or e.source)
        want = dtype_of(e)
        lanes = tvm.DataType(str(want)).lanes
        index = e.indices[0]
        if lanes == 1 and not isinstance(index, tirx.Ramp):
            return self._load(array, elem, self.index(index), want)
        scalar = tvm.DataType(str(want)).with_lanes(1)
        parts = [self._load(array, elem, i, scalar) for i in self._lanes(index, lanes)]
        return f"{self.ty(want)}({', '.join(parts)})"

    def expr_Call(self, e):
        op = e.op.name.split(".", 1)[-1]  # ops are named tirx.* or prim.* depending on where they come from
        args = e.args
        if op in ("call_pure_extern", "call_extern"):
            fname = args[0].value
            return self._math(fname if fname in _MATH else fname.removesuffix("f"), args[1:], e)
        if op == "if_then_else":
            return f"({self.expr(args[0])} ? {self.expr(args[1])} : {self.expr(args[2])})"
        if op == "likely":
            return self.expr(args[0])
        if op == "assume":
            return "true"
        if op in _BITWISE_OPS:
            return f"({self.expr(args[0])} {_BITWISE_OPS[op]} {self.expr(args[1])})"
        if op == "bitwise_not":
            return f"(~{self.expr(args[0])})"
        if op == "reinterpret":
            return self._reinterpret(args[0], dtype_of(e))
        if op == "clz":
            return f"(31 - findMSB({self.expr(args[0])}))"
        if op == "infinity":
            return self.expr(tirx.FloatImm(str(dtype_of(e)), float("inf")))
        if op in _MATH:
            return self._math(op, args, e)
        raise CompileError(f"Vulkan codegen: kernel {self.name} calls {e.op.name}, which has no GLSL form")

    def _math(self, fname: str, args, e) -> str:
        glsl = _MATH.get(fname)
        if glsl is None:
            raise CompileError(f"Vulkan codegen: kernel {self.name} calls math function {fname!r}, "
                               "which has no GLSL form")
        arg_type = tvm.DataType(str(dtype_of(args[0]))) if args else None
        narrow_float = arg_type is not None and arg_type.type_code == 2 and (
            arg_type.bits == 16 or (arg_type.bits == 64 and glsl not in _DOUBLE_BUILTINS))
        if narrow_float:
            # run in float32: glslang emits 16-bit transcendentals without the Float16 capability
            # (phone GPUs evaluate them in float32 anyway), and GLSL has no double exp/log/tanh
            wide = f"float32x{arg_type.lanes}" if arg_type.lanes > 1 else "float32"
            text_args = [f"{self.ty(wide)}({self.expr(a)})" for a in args]
            if glsl.startswith("edgec_"):
                glsl = self._helper(glsl, wide)
            call = f"{glsl}({', '.join(text_args)})"
            result = tvm.DataType(str(dtype_of(e)))
            return f"{self.ty(result)}({call})" if result.type_code == 2 else call
        if glsl.startswith("edgec_"):
            glsl = self._helper(glsl, dtype_of(args[0]))
        text_args = [self.expr(a) for a in args]
        return f"{glsl}({', '.join(text_args)})"

    def _helper(self, base: str, dtype) -> str:
        t = self.ty(dtype)
        key = (base, t)
        if key not in self.helpers:
            name = f"{base}_{t}"
            body = (_FLOAT_HELPERS.get(base) or _INT_HELPERS[base]).replace(base, name).replace("T", t)
            self.helpers[key] = body
        return f"{base}_{t}"

    def _reinterpret(self, value, to) -> str:
        src, to_s = str(dtype_of(value)), str(to)
        text = self.expr(value)
        table = {("float32", "int32"): "floatBitsToInt", ("float32", "uint32"): "floatBitsToUint",
                 ("int32", "float32"): "intBitsToFloat", ("uint32", "float32"): "uintBitsToFloat"}
        if (src, to_s) in table:
            return f"{table[(src, to_s)]}({text})"
        if src == to_s:
            return text
        if tvm.DataType(src).bits == tvm.DataType(to_s).bits and "float" not in src + to_s:
            return f"{self.ty(to)}({text})"
        raise CompileError(f"Vulkan codegen: kernel {self.name} reinterprets {src} as {to_s}")


def _float32_literal(v: float) -> str:
    f32 = struct.unpack("<f", struct.pack("<f", v))[0]
    text = repr(f32)
    if "e" not in text and "." not in text:
        text += ".0"
    return text


def _is_zero(e) -> bool:
    return isinstance(e, tirx.IntImm) and int(e.value) == 0


def _is_positive_const(e) -> bool:
    return isinstance(e, tirx.IntImm) and int(e.value) > 0


def _provably_nonneg(e) -> bool:
    """Thread indices, loop counters from 0 and non-negative arithmetic of them (cheap, conservative)."""
    try:
        bound = tvm.arith.Analyzer().const_int_bound(e)
    except Exception:  # the analyzer refuses some expressions; assume the worst
        return False
    return bound.min_value >= 0


def emit_kernel(func: tirx.PrimFunc, name: str, int64: bool = True) -> Kernel:
    """GLSL source and launch metadata for one device PrimFunc (``int64``: the device has shaderInt64)."""
    em = _Emitter(func, name, narrow_int64=not int64)
    scalars: list[ScalarArg] = []
    buffer_decls: list[str] = []
    order: list[tuple[str, int]] = []
    offset = 0
    for param in func.params:
        ty = param.ty
        if isinstance(ty, tvm.ir.PointerType):
            elem = str(ty.element_type.dtype)
            pair = em.narrow_int64 and elem in ("int64", "uint64")
            storage = _storage_scalar(em.narrowed(elem))
            em.types.add(storage)
            bits = 8 if elem == "bool" else tvm.DataType(elem).bits
            if bits < 32:
                em.storage_bits.add(bits)
            binding = len(buffer_decls)
            block = em.fresh(f"B{binding}_{param.name}")
            array = f"{block}.data"
            em.buffers[param] = (array, f"{elem}_pair" if pair else elem)
            order.append(("buffer", binding))
            em.used_names.add(f"blk_{block}")
            buffer_decls.append(
                f"layout(std430, set = 0, binding = {binding}) buffer blk_{block} {{ {storage} data[]; }} {block};")
        else:
            dtype = em.narrowed(ty.dtype)
            size = max(4, tvm.DataType(dtype).bits // 8)
            offset = (offset + size - 1) // size * size
            em.ty(dtype)
            arg_name = em.fresh(param.name)
            em.names[param] = f"pc.{arg_name}"
            order.append(("scalar", len(scalars)))
            scalars.append(ScalarArg(arg_name, dtype, offset, size))
            offset += size
    launch_tags = [str(t) for t in (func.attrs.get("tirx.kernel_launch_params") or [])]
    grid_offset = -1
    if "blockIdx.x" in launch_tags and not {"blockIdx.y", "blockIdx.z"} & set(launch_tags):
        em.fold_grid = True
        grid_offset = offset
        scalars.append(ScalarArg(GRID_PUSH_NAME, "uint32", offset, 4))
        offset += 4
    if offset > 128:
        raise CompileError(f"Vulkan codegen: kernel {name} has {offset} bytes of scalar arguments (at most 128)")
    em.stmt(func.body)
    source = _assemble(em, buffer_decls, scalars)
    return Kernel(name, source, len(buffer_decls), scalars, launch_tags, tuple(em.local_size),
                  _features(em), grid_offset, order)


def _features(em: _Emitter) -> set[str]:
    feats = {_ARITH_FEATURE[t] for t in em.types if t in _ARITH_FEATURE}
    for t in em.types:  # vector types need their scalar's feature too
        for base, prefix in _VECTOR_PREFIX.items():
            if t.startswith(prefix) and t[len(prefix):].isdigit() and base in _ARITH_FEATURE:
                feats.add(_ARITH_FEATURE[base])
    feats |= {_STORAGE_FEATURE[b // 8] for b in em.storage_bits}
    return feats


def _assemble(em: _Emitter, buffer_decls: list[str], scalars: list[ScalarArg]) -> str:
    x, y, z = em.local_size
    out = ["#version 450", "#extension GL_EXT_shader_explicit_arithmetic_types : require"]
    if 16 in em.storage_bits:
        out.append("#extension GL_EXT_shader_16bit_storage : require")
    if 8 in em.storage_bits:
        out.append("#extension GL_EXT_shader_8bit_storage : require")
    if em.subgroup:
        out.append("#extension GL_KHR_shader_subgroup_basic : require")
    out.append(f"layout(local_size_x = {x}, local_size_y = {y}, local_size_z = {z}) in;")
    out.extend(buffer_decls)
    if scalars:
        members = " ".join(f"layout(offset = {s.offset}) {glsl_type(s.dtype)} {s.name};" for s in scalars)
        out.append(f"layout(push_constant) uniform PushConstants {{ {members} }} pc;")
    out.extend(em.shared_decls)
    out.extend(em.helpers.values())
    out.append("void main() {")
    out.extend(em.lines)
    out.append("}")
    return "\n".join(out) + "\n"


# TVM 0.27 names the load node TensorLoad (``tirx.BufferLoad`` is a constructor function).
_Emitter.expr_TensorLoad = _Emitter.expr_BufferLoad
_Emitter.stmt_TensorStore = _Emitter.stmt_BufferStore
