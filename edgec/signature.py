"""Tensor signatures: the names, shapes and dtypes a model takes and returns.

A dimension is an ``int`` when static and a ``str`` (its symbolic name) when it stays dynamic.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from edgec.errors import InputError

Dim = int | str

DTYPES = (
    "float32", "float16", "float64", "bfloat16", "int8", "int16", "int32", "int64",
    "uint8", "uint16", "uint32", "uint64", "bool",
)


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[Dim, ...] | None  # None: the user gave no dims (only with a dtype)
    dtype: str | None = None

    def __post_init__(self):
        if self.dtype is not None and self.dtype not in DTYPES:
            raise InputError(f"input {self.name!r}: unknown dtype {self.dtype!r}; use one of {', '.join(DTYPES)}")
        for d in self.shape or ():
            if isinstance(d, int) and d < 0:
                raise InputError(f"input {self.name!r}: negative dimension in {self.shape}")

    def to_json(self) -> dict:
        return {"name": self.name, "shape": list(self.shape or []), "dtype": self.dtype}

    @staticmethod
    def from_json(data: dict) -> "TensorSpec":
        return TensorSpec(data["name"], tuple(data["shape"]), data["dtype"])


_INPUT_RE = re.compile(r"^(?P<name>[^:]+):(?P<dims>[^:]*)(?::(?P<dtype>[A-Za-z0-9_]+))?$")


def parse_input_option(text: str) -> TensorSpec:
    """Parse ``NAME:DIMS[:DTYPE]`` where DIMS is ``1x3x224x224``; ``?`` or a word keeps a dim symbolic."""
    m = _INPUT_RE.match(text)
    if not m:
        raise InputError(f"--input {text!r} is not NAME:DIMS[:DTYPE], e.g. x:1x3x224x224:float32")
    dims: list[Dim] = []
    raw = m["dims"]
    for part in raw.split("x") if raw else []:
        part = part.strip()
        if part.isdigit():
            dims.append(int(part))
        elif part in ("?", "-1", "") or re.fullmatch(r"[A-Za-z_]\w*", part):
            dims.append(part if part not in ("?", "-1", "") else f"{m['name']}_dim{len(dims)}")
        else:
            raise InputError(f"--input {text!r}: dimension {part!r} is neither a number nor a name")
    return TensorSpec(m["name"], tuple(dims) if raw else None, m["dtype"])


def check_feeds(specs: list[TensorSpec], feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Check run-time inputs against a signature; returns them in signature order.

    Symbolic dims must agree wherever the same name appears.
    """
    names = [s.name for s in specs]
    missing = [n for n in names if n not in feeds]
    extra = [n for n in feeds if n not in names]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing {missing}")
        if extra:
            parts.append(f"unexpected {extra}")
        raise InputError(f"wrong inputs: {'; '.join(parts)}; the model takes {names}")
    bound: dict[str, tuple[int, str]] = {}
    out = {}
    for spec in specs:
        value = np.asarray(feeds[spec.name])
        if spec.dtype and value.dtype != np.dtype(_np_dtype(spec.dtype)):
            raise InputError(f"input {spec.name!r}: dtype {value.dtype} given, the model takes {spec.dtype}")
        shape = spec.shape or ()
        if value.ndim != len(shape):
            raise InputError(
                f"input {spec.name!r}: shape {tuple(value.shape)} has rank {value.ndim}, the model takes {list(shape)}"
            )
        for axis, (dim, got) in enumerate(zip(shape, value.shape)):
            if isinstance(dim, int) and dim != got:
                raise InputError(
                    f"input {spec.name!r}: shape {tuple(value.shape)} does not match {list(shape)} at axis {axis}"
                )
            if isinstance(dim, str):
                if dim in bound and bound[dim][0] != got:
                    raise InputError(
                        f"input {spec.name!r}: dimension {dim!r}={got} at axis {axis} disagrees with "
                        f"{dim}={bound[dim][0]} from input {bound[dim][1]!r}"
                    )
                bound[dim] = (got, spec.name)
        # (np.ascontiguousarray would turn a 0-d scalar input into shape (1,))
        out[spec.name] = np.asarray(value, order="C")
    return out


def _np_dtype(dtype: str):
    if dtype == "bfloat16":
        import ml_dtypes

        return ml_dtypes.bfloat16
    return dtype


def random_feeds(specs: list[TensorSpec], dims: dict[str, int] | None = None, seed: int = 0):
    """Random inputs for a signature; symbolic dims take ``dims[name]`` or 2."""
    rng = np.random.default_rng(seed)
    dims = dims or {}
    feeds = {}
    for spec in specs:
        shape = tuple(d if isinstance(d, int) else dims.get(d, 2) for d in spec.shape or ())
        dtype = np.dtype(_np_dtype(spec.dtype or "float32"))
        if dtype == np.bool_:
            feeds[spec.name] = rng.integers(0, 2, size=shape).astype(bool)
        elif np.issubdtype(dtype, np.integer):
            feeds[spec.name] = rng.integers(0, 4, size=shape).astype(dtype)
        else:
            feeds[spec.name] = rng.standard_normal(size=shape).astype(dtype)
    return feeds
