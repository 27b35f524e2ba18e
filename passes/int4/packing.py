"""Group-wise int4 weights in numpy: quantize, dequantize, and pack per target.

A :class:`QuantizedWeight` is the target-independent form every importer and the quantize pass
produce: ``W[n, k] ≈ (q[n, k] - zero[n, k // group]) * scale[n, k // group]``. The packed forms
are what the kernels read; the packing is chosen per target when the operator is emitted.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

GROUP_SIZES = (32, 64, 128)


@dataclass
class QuantizedWeight:
    q: np.ndarray  # [N, K] uint8, values 0..15
    scale: np.ndarray  # [N, K // group] float32
    zero: np.ndarray  # [N, K // group] float32, in quantized units (8 when symmetric)
    group: int

    @property
    def shape(self) -> tuple[int, int]:
        return self.q.shape

    def dequantize(self) -> np.ndarray:
        g = self.group
        scale = np.repeat(self.scale, g, axis=1)
        zero = np.repeat(self.zero, g, axis=1)
        return ((self.q.astype(np.float32) - zero) * scale).astype(np.float32)

    def packed_bytes(self) -> int:
        return self.q.size // 2 + self.scale.nbytes + self.zero.nbytes


def quantize(w: np.ndarray, group: int, symmetric: bool, clip=1.0) -> QuantizedWeight:
    """Round-to-nearest group quantization of ``w`` [N, K]; ``clip`` (scalar or [N, K//group])
    shrinks each group's range before rounding."""
    w = np.asarray(w, dtype=np.float32)
    n, k = w.shape
    groups = w.reshape(n, k // group, group)
    if symmetric:
        amax = np.abs(groups).max(axis=2) * clip
        scale = np.maximum(amax, 1e-8) / 7.0
        zero = np.full_like(scale, 8.0)
    else:
        lo = np.minimum(groups.min(axis=2) * clip, 0.0)
        hi = np.maximum(groups.max(axis=2) * clip, 0.0)
        scale = np.maximum(hi - lo, 1e-8) / 15.0
        zero = np.clip(np.round(-lo / scale), 0, 15)
    q = np.clip(np.round(groups / scale[..., None]) + zero[..., None], 0, 15)
    return QuantizedWeight(q.reshape(n, k).astype(np.uint8), scale.astype(np.float32), zero.astype(np.float32), group)


def pack_cpu(qw: QuantizedWeight, lanes: int):
    """CPU layout: ``W[N/lanes, K/2, lanes]`` bytes (low nibble = even k), so that one byte
    load per lane feeds a vector of outputs; ``scale`` and ``min = -zero*scale`` as ``[K/group, N]``.
    N is padded up to a multiple of ``lanes``."""
    n, k = qw.shape
    n_pad = -(-n // lanes) * lanes
    q = np.zeros((n_pad, k), np.uint8)
    q[:n] = qw.q
    pairs = q[:, 0::2] | (q[:, 1::2] << 4)  # [Np, K/2]
    packed = np.ascontiguousarray(pairs.reshape(n_pad // lanes, lanes, k // 2).transpose(0, 2, 1))
    scale = np.zeros((k // qw.group, n_pad), np.float32)
    scale[:, :n] = qw.scale.T
    mins = np.zeros_like(scale)
    mins[:, :n] = (-qw.zero * qw.scale).T
    return packed, scale, mins


def pack_rows(qw: QuantizedWeight, dtype: str):
    """GPU layout: ``W[N, K/2]`` bytes (low nibble = even k), ``scale`` and ``min`` as ``[N, K/group]``."""
    pairs = qw.q[:, 0::2] | (qw.q[:, 1::2] << 4)
    return np.ascontiguousarray(pairs), qw.scale.astype(dtype), (-qw.zero * qw.scale).astype(dtype)
