"""Legalization of conv2d in channel-blocked layouts (NCHW[x]c data, OIHW[x]i[y]o kernels).

Relax's ``ConvertLayout`` can rewrite a graph to NCHWc, but TVM's legalization of conv2d only
handles four-letter layouts, so a blocked conv would reach the VM unlowered. This is the
compute for it::

    out[n, oc, y, x, ob] = sum over (ic, kh, kw, ib) of
        pad(data)[n, ic, y*sh + kh*dh, x*sw + kw*dw, ib] * kernel[oc, ic, kh, kw, ib, ob]

for ``groups == 1``, and for depthwise convolutions (``groups`` = channels, one input channel
per output channel) with the ``OIHW1i[y]o`` kernel::

    out[n, c, y, x, b] = sum over (kh, kw) of pad(data)[n, c, y*sh + kh*dh, x*sw + kw*dw, b] * kernel[c, 0, kh, kw, 0, b]

The innermost output axis is the channel block, so the default CPU schedule
(:mod:`edgec.schedules.cpu`) vectorizes it with contiguous loads of kernel and output, and the
reduction walks the kernel in memory order. Other blocked layouts or groupings are left alone
(and reported by the VM as unlowered), which :mod:`edgec.passes.layout` never produces.
"""

from __future__ import annotations

import re

import tvm
from tvm import te, tirx

_DATA = re.compile(r"NCHW(\d+)c")
_KERNEL = re.compile(r"OIHW(\d+)i(\d+)o")


def blocked_layouts(block: int) -> tuple[str, str]:
    """The data and kernel layouts of a conv blocked by ``block`` channels."""
    return f"NCHW{block}c", f"OIHW{block}i{block}o"


def _conv2d(bb, call):
    attrs = call.attrs
    data_block = _DATA.fullmatch(str(attrs.data_layout))
    kernel_block = _KERNEL.fullmatch(str(attrs.kernel_layout))
    if data_block is None or kernel_block is None or str(attrs.out_layout) != str(attrs.data_layout):
        return _stock(bb, call)
    data, kernel = call.args
    groups = int(attrs.groups)
    channels = int(data.ty.shape[1]) * int(data_block.group(1)) if _static(data) else None
    depthwise = groups > 1 and groups == channels and int(kernel.ty.shape[1]) == 1
    if groups != 1 and not depthwise:
        return call
    out_dtype = call.ty.dtype
    strides = [int(s) for s in attrs.strides]
    dilation = [int(d) for d in attrs.dilation]
    top, left, bottom, right = (int(p) for p in attrs.padding)

    def compute(x, w):
        padded = x
        if top or left or bottom or right:
            padded = tvm.topi.nn.pad(x, [0, 0, top, left, 0], [0, 0, bottom, right, 0], name="pad")
        _, _, kh_extent, kw_extent, ib_extent, ob_extent = w.shape
        n, _, h, wd, _ = padded.shape
        out_h = (h - (kh_extent - 1) * dilation[0] - 1) // strides[0] + 1
        out_w = (wd - (kw_extent - 1) * dilation[1] - 1) // strides[1] + 1
        kh = te.reduce_axis((0, kh_extent), "kh")
        kw = te.reduce_axis((0, kw_extent), "kw")

        def at(n_, c, y, xx, b, kh_, kw_):
            return padded[n_, c, y * strides[0] + kh_ * dilation[0], xx * strides[1] + kw_ * dilation[1], b]

        if depthwise:
            return te.compute(
                (n, w.shape[0], out_h, out_w, ob_extent),
                lambda n_, c, y, xx, b: te.sum(
                    at(n_, c, y, xx, b, kh, kw).astype(out_dtype) * w[c, 0, kh, kw, 0, b].astype(out_dtype),
                    axis=[kh, kw]),
                name="conv2d_nchwc_depthwise", tag="conv2d_nchwc")
        ic = te.reduce_axis((0, w.shape[1]), "ic")
        ib = te.reduce_axis((0, ib_extent), "ib")
        return te.compute(
            (n, w.shape[0], out_h, out_w, ob_extent),
            lambda n_, oc, y, xx, ob: te.sum(
                at(n_, ic, y, xx, ib, kh, kw).astype(out_dtype) * w[oc, ic, kh, kw, ib, ob].astype(out_dtype),
                axis=[ic, kh, kw, ib]),
            name="conv2d_nchwc", tag="conv2d_nchwc")

    return bb.call_te(compute, data, kernel, primfunc_name_hint="conv2d_nchwc")


def _static(expr) -> bool:
    return all(isinstance(d, tirx.IntImm) for d in expr.ty.shape.values)


def _stock(bb, call):
    return tvm.ir.Op.get("relax.nn.conv2d").get_attr("FLegalize")(bb, call)


LEGALIZE = {"relax.nn.conv2d": _conv2d}
