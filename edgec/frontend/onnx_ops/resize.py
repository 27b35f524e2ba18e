"""Resize (opset 11-19) as separable per-axis gathers with weights computed at build time.

Stock TVM maps Resize onto ``image.resize2d``, which derives the coordinate transform from the
size ratio: with ``scales`` that do not divide the input exactly (a 0.6 downsample), with
``antialias``, ``axes``, ``keep_aspect_ratio_policy`` or ``half_pixel_symmetric`` its results
differ from ONNX's. ONNX resize is separable, so for each resized axis we compute, in numpy,
the source taps and their weights for every output position exactly as the ONNX spec's
reference does (``_interpolate_1d_along_axis``); the model then does ``n`` gathers and a
weighted sum per axis (one gather for ``nearest``). Scales/sizes/roi must be constants.
"""

from __future__ import annotations

import math

import numpy as np
from tvm import relax

from edgec.frontend.onnx_converters import OnnxOpConverter, register


def _const(expr):
    """The numpy value of a constant input, None for an absent one; raise for a runtime one."""
    if expr is None:
        return None
    for get in (lambda e: e.data.numpy(), lambda e: e.value.numpy()):
        try:
            return get(expr)
        except AttributeError:
            continue
    raise ValueError("Resize needs constant roi/scales/sizes (bind them with edgec.compile(constants=...))")


def _attr_str(attr, name, default):
    value = attr.get(name, default)
    return value.decode() if isinstance(value, bytes) else value


# -- per-axis taps, as in the ONNX reference ------------------------------------------------------


def _nearest(ratio, _scale, mode):
    if float(ratio).is_integer():
        return np.array([0.0, 1.0])
    return np.array({
        "round_prefer_floor": [ratio <= 0.5, ratio > 0.5],
        "round_prefer_ceil": [ratio < 0.5, ratio >= 0.5],
        "floor": [1, 0],
        "ceil": [0, 1],
    }[mode], dtype=np.float64)


def _linear(ratio, scale, antialias):
    if not antialias:
        return np.array([1 - ratio, ratio])
    scale = min(scale, 1.0)
    start = int(np.floor(-1 / scale) + 1)
    args = (np.arange(start, start + 2 - 2 * start) - ratio) * scale
    coeffs = np.clip(1 - np.abs(args), 0, 1)
    return coeffs / coeffs.sum()


def _cubic(ratio, scale, antialias, a):
    if not antialias:
        r = ratio
        return np.array([
            ((a * (r + 1) - 5 * a) * (r + 1) + 8 * a) * (r + 1) - 4 * a,
            ((a + 2) * r - (a + 3)) * r * r + 1,
            ((a + 2) * (1 - r) - (a + 3)) * (1 - r) * (1 - r) + 1,
            ((a * ((1 - r) + 1) - 5 * a) * ((1 - r) + 1) + 8 * a) * ((1 - r) + 1) - 4 * a,
        ])
    scale = min(scale, 1.0)

    def kernel(x):
        x = abs(x)
        if x <= 1:
            return (a + 2) * x**3 - (a + 3) * x**2 + 1
        if x < 2:
            return a * x**3 - 5 * a * x**2 + 8 * a * x - 4 * a
        return 0.0

    start = int(np.floor(-2 / scale) + 1)
    coeffs = np.array([kernel(scale * (i - ratio)) for i in range(start, 2 - start)])
    return coeffs / coeffs.sum()


def _source_coords(mode, out_len, in_len, scale, roi):
    y = np.arange(out_len, dtype=np.float64)
    out_width = scale * in_len
    outside = None
    if mode == "align_corners":
        x = np.zeros(out_len) if out_width == 1 else y * (in_len - 1) / (out_width - 1)
    elif mode == "asymmetric":
        x = y / scale
    elif mode == "tf_crop_and_resize":
        if out_width == 1:
            x = np.full(out_len, (roi[1] - roi[0]) * (in_len - 1) / 2)
        else:
            x = y * (roi[1] - roi[0]) * (in_len - 1) / (out_width - 1)
        x = x + roi[0] * (in_len - 1)
        outside = (x < 0) | (x > in_len - 1)
    elif mode == "pytorch_half_pixel":
        x = np.full(out_len, -0.5) if out_width == 1 else (y + 0.5) / scale - 0.5
    elif mode == "half_pixel":
        x = (y + 0.5) / scale - 0.5
    elif mode == "half_pixel_symmetric":
        offset = in_len / 2 * (1 - out_len / out_width)
        x = offset + (y + 0.5) / scale - 0.5
    else:
        raise ValueError(f"Resize: unknown coordinate_transformation_mode {mode!r}")
    return x, outside


def axis_taps(in_len, out_len, scale, coeffs_fn, coord_mode, roi, exclude_outside):
    """(indices, weights, outside) for one axis: ``out[o] = sum_k weights[o,k] * in[indices[o,k]]``."""
    x, outside = _source_coords(coord_mode, out_len, in_len, scale, roi)
    floor = np.floor(x)
    ratios = np.where(x == floor, 1.0, x - floor)
    coeffs = np.stack([coeffs_fn(float(r), scale) for r in ratios]).astype(np.float64)
    n = coeffs.shape[1]
    pad = int(np.ceil(n / 2))
    padded = x + pad
    p = np.floor(padded).astype(np.int64)
    frac = padded - p
    if n % 2 == 0:
        offset = np.where(frac == 0, -(n // 2), -(n // 2) + 1)
    else:
        offset = np.where(frac <= 0.5, -((n - 1) // 2), -((n - 1) // 2) + 1)
    idx = (p + offset)[:, None] + np.arange(n)[None, :] - pad
    if exclude_outside:
        coeffs = np.where((idx < 0) | (idx >= in_len), 0.0, coeffs)
        total = coeffs.sum(axis=-1, keepdims=True)
        coeffs = coeffs / np.where(total == 0, 1.0, total)
    return np.clip(idx, 0, in_len - 1), coeffs, outside


def _output_plan(shape, axes, scales, sizes, policy):
    """Per-axis (scale, out_len) following the spec's scales/sizes/keep_aspect_ratio rules."""
    rank = len(shape)
    if sizes is not None:
        full = list(shape)
        for i, d in enumerate(axes):
            full[d] = int(sizes[i])
        factors = [full[i] / shape[i] for i in range(rank)]
        if policy != "stretch":
            pick = min if policy == "not_larger" else max
            scale = pick(factors[d] for d in axes)
            factors = [scale if i in axes else 1.0 for i in range(rank)]
            full = [int(scale * shape[i] + 0.5) if i in axes else shape[i] for i in range(rank)]
        return factors, full
    factors = [1.0] * rank
    for i, d in enumerate(axes):
        factors[d] = float(scales[i])
    return factors, [int(f * s) for f, s in zip(factors, shape)]


@register("Resize")
class Resize(OnnxOpConverter):
    @classmethod
    def _impl_v11(cls, bb, inputs, attr, params):
        x = inputs[0]
        shape = [int(d) for d in x.ty.shape]
        rank = len(shape)
        roi, scales, sizes = _const(inputs[1]), _const(inputs[2]), _const(inputs[3])
        if scales is not None and scales.size == 0:
            scales = None
        if sizes is not None and sizes.size == 0:
            sizes = None
        if (scales is None) == (sizes is None):
            raise ValueError("Resize needs exactly one of scales and sizes")
        axes = [a + rank if a < 0 else a for a in attr.get("axes", range(rank))]
        if roi is not None and roi.size:
            full = [0.0] * rank + [1.0] * rank
            for i, d in enumerate(axes):
                full[d], full[rank + d] = roi[i], roi[len(axes) + i]
            roi = full
        else:
            roi = None
        factors, out_shape = _output_plan(shape, axes, scales, sizes, _attr_str(attr, "keep_aspect_ratio_policy", "stretch"))

        mode = _attr_str(attr, "mode", "nearest")
        antialias = bool(attr.get("antialias", 0))
        if mode == "nearest":
            nearest_mode = _attr_str(attr, "nearest_mode", "round_prefer_floor")
            coeffs_fn = lambda r, s: _nearest(r, s, nearest_mode)  # noqa: E731
        elif mode == "linear":
            coeffs_fn = lambda r, s: _linear(r, s, antialias)  # noqa: E731
        elif mode == "cubic":
            a = attr.get("cubic_coeff_a", -0.75)
            coeffs_fn = lambda r, s: _cubic(r, s, antialias, a)  # noqa: E731
        else:
            raise ValueError(f"Resize: unknown mode {mode!r}")
        coord_mode = _attr_str(attr, "coordinate_transformation_mode", "half_pixel")
        exclude_outside = bool(attr.get("exclude_outside", 0))
        extrapolation = attr.get("extrapolation_value", 0.0)

        dtype = str(x.ty.dtype)
        compute = dtype if dtype.startswith(("float", "bfloat")) or mode == "nearest" else "float32"
        y = relax.op.astype(x, compute) if compute != dtype else x
        for axis in range(rank):
            axis_roi = None if roi is None else [roi[axis], roi[axis + rank]]
            identity_roi = axis_roi is None or (math.isclose(axis_roi[0], 0) and math.isclose(axis_roi[1], 1))
            if math.isclose(factors[axis], 1.0) and out_shape[axis] == shape[axis] and identity_roi:
                continue
            if out_shape[axis] == 0:
                raise ValueError("Resize to an empty output is not supported")
            idx, w, outside = axis_taps(
                shape[axis], out_shape[axis], factors[axis], coeffs_fn, coord_mode, axis_roi, exclude_outside
            )
            y = bb.normalize(cls._apply_axis(bb, y, axis, rank, idx, w, mode, compute))
            if outside is not None and outside.any():
                mask_shape = [1] * rank
                mask_shape[axis] = out_shape[axis]
                y = bb.normalize(relax.op.where(
                    relax.const(outside.reshape(mask_shape)), relax.const(extrapolation, compute), y))
        if compute != dtype:
            info = np.iinfo(dtype)
            y = relax.op.clip(relax.op.round(y), float(info.min), float(info.max))
            y = relax.op.astype(y, dtype)
        return y

    @staticmethod
    def _apply_axis(bb, y, axis, rank, idx, w, mode, dtype):
        if mode == "nearest":
            pick = idx[np.arange(len(idx)), np.argmax(w, axis=1)]
            return relax.op.take(y, relax.const(pick.astype("int64"), "int64"), axis=axis)
        total = None
        shape = [1] * rank
        shape[axis] = len(idx)
        for k in range(idx.shape[1]):
            if not np.any(w[:, k]):
                continue
            tap = relax.op.take(y, relax.const(idx[:, k].astype("int64"), "int64"), axis=axis)
            term = relax.op.multiply(tap, relax.const(w[:, k].reshape(shape).astype(dtype), dtype))
            total = term if total is None else relax.op.add(total, term)
        return total

    _impl_v13 = _impl_v11
    _impl_v18 = _impl_v11
    _impl_v19 = _impl_v11
