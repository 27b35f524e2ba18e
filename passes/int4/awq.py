"""AWQ in numpy: activation-aware scales and weight clipping for one group of linears.

Given calibration activations ``X[R, K]`` shared by linears ``W_i[N_i, K]``: search the exponent
α ∈ {0, 0.05, …, 1} of ``s = mean|x|^α`` (normalized) minimizing the group's output error when
``W·diag(s)`` is quantized and ``x / s`` is fed in; then, per output channel and K-group, shrink
the weight's range by up to 45% in 5% steps where that lowers the output error.
"""

from __future__ import annotations

import numpy as np

from edgec.passes.int4.packing import quantize

ALPHAS = np.round(np.arange(0, 1.0001, 0.05), 2)
CLIP_RATIOS = np.round(np.arange(1.0, 0.5499, -0.05), 2)
MAX_ROWS = 256


def subsample(x: np.ndarray, rows: int = MAX_ROWS) -> np.ndarray:
    x = x.reshape(-1, x.shape[-1]).astype(np.float32)
    if len(x) > rows:
        x = x[np.linspace(0, len(x) - 1, rows).astype(int)]
    return x


def _output_error(x, w, wq) -> float:
    return float(np.mean((x @ (wq - w).T) ** 2))


def search_scale(x: np.ndarray, weights: list[np.ndarray], group: int, symmetric: bool) -> tuple[np.ndarray, float]:
    """The per-input-channel scale ``s`` (weights multiply it, activations divide by it) and its α."""
    mean_abs = np.maximum(np.abs(x).mean(axis=0), 1e-8)
    w_all = np.concatenate(weights, axis=0)
    best = (np.inf, np.ones_like(mean_abs), 0.0)
    for alpha in ALPHAS:
        s = mean_abs ** alpha
        s = s / np.sqrt(s.max() * s.min())
        wq = quantize(w_all * s, group, symmetric).dequantize() / s
        err = _output_error(x, w_all, wq)
        if err < best[0]:
            best = (err, s.astype(np.float32), float(alpha))
    return best[1], best[2]


def search_clip(x: np.ndarray, w: np.ndarray, group: int, symmetric: bool) -> np.ndarray:
    """Per (output channel, K-group) clip ratio minimizing that group's share of the output error."""
    n, k = w.shape
    xg = x.reshape(len(x), k // group, group)
    best_err = np.full((n, k // group), np.inf)
    best = np.ones((n, k // group), np.float32)
    for ratio in CLIP_RATIOS:
        diff = (quantize(w, group, symmetric, clip=ratio).dequantize() - w).reshape(n, k // group, group)
        err = np.empty((n, k // group))
        for start in range(0, n, 512):  # chunks bound the [rows, chunk, groups] temporary
            part = np.einsum("rgi,ngi->rng", xg, diff[start:start + 512], optimize=True)
            err[start:start + 512] = np.mean(part ** 2, axis=0)
        better = err < best_err
        best_err[better] = err[better]
        best[better] = ratio
    return best
