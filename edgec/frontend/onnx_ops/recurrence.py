"""TIR kernels that run the time loop of an LSTM or GRU over a sequence of any length.

TVM's Relax has no loop op, and unrolling needs the sequence length at compile time; exported OCR
and audio models keep it symbolic. So the converters compute the input projection ``X·Wᵀ + b``
for all steps at once in Relax (one big matmul), and hand the strictly sequential part, the
recurrent matmul and the gate math, to one of these kernels.

Each kernel processes one direction. It keeps the running state in its ``h_n``/``c_n`` outputs
and uses ``gates`` (an output the caller drops) as scratch, so it allocates nothing itself.
The loops are written already lowered and marked scheduled: the time loop carries a dependence
that no default schedule may reorder. For a GPU, :func:`on_one_gpu_thread` wraps a kernel in a
one-thread launch: correct, and cheap for the small hidden sizes of edge models.
"""

from __future__ import annotations

import tvm
from tvm import tirx
from tvm.script import tirx as T


def on_one_gpu_thread(func: tirx.PrimFunc) -> tirx.PrimFunc:
    """``func`` with its body inside a 1×1 block/thread launch, so that it runs on the device."""
    body = func.body
    for tag in ("threadIdx.x", "blockIdx.x"):
        var = tirx.Var(tag.replace(".", "_"), "int32")
        axis = tirx.IterVar(tvm.ir.Range(0, 1), var, tirx.IterVar.ThreadIndex, tag)
        body = tirx.For(var, 0, 1, tirx.ForKind.THREAD_BINDING, body, thread_binding=axis)
    return func.with_body(body)


def _clipped(x, clip):
    return x if clip is None else T.max(T.min(x, T.float32(clip)), T.float32(-clip))


def lstm_kernel(hidden: int, reverse: bool, clip: float | None):
    """One LSTM direction; gate order i, o, f, c as in ONNX, peepholes p = (i, o, f)."""
    H, G = hidden, 4 * hidden

    @T.prim_func(private=True, check_well_formed=False)
    def lstm(xw_h: T.handle, r_h: T.handle, p_h: T.handle, h0_h: T.handle, c0_h: T.handle,
             y_h: T.handle, hn_h: T.handle, cn_h: T.handle, gates_h: T.handle):
        T.func_attr({"tirx.noalias": True, "tirx.is_scheduled": True})
        seq = T.int64()
        batch = T.int64()
        XW = T.match_buffer(xw_h, (seq, batch, G), "float32")
        R = T.match_buffer(r_h, (G, H), "float32")
        P = T.match_buffer(p_h, (3 * H,), "float32")
        H0 = T.match_buffer(h0_h, (batch, H), "float32")
        C0 = T.match_buffer(c0_h, (batch, H), "float32")
        Y = T.match_buffer(y_h, (seq, batch, H), "float32")
        HN = T.match_buffer(hn_h, (batch, H), "float32")
        CN = T.match_buffer(cn_h, (batch, H), "float32")
        GATES = T.match_buffer(gates_h, (batch, G), "float32")
        for b, j in T.grid(batch, H):
            HN[b, j] = H0[b, j]
            CN[b, j] = C0[b, j]
        for s in T.serial(seq):
            t: T.let[T.int64] = T.if_then_else(reverse, seq - 1 - s, s)
            for b, g in T.grid(batch, G):
                GATES[b, g] = XW[t, b, g]
                for k in T.serial(H):
                    GATES[b, g] = GATES[b, g] + HN[b, k] * R[g, k]
            for b, j in T.grid(batch, H):
                c_prev: T.let[T.float32] = CN[b, j]
                i = T.sigmoid(_clipped(GATES[b, j] + P[j] * c_prev, clip))
                f = T.sigmoid(_clipped(GATES[b, 2 * H + j] + P[2 * H + j] * c_prev, clip))
                c_new: T.let[T.float32] = f * c_prev + i * T.tanh(_clipped(GATES[b, 3 * H + j], clip))
                o = T.sigmoid(_clipped(GATES[b, H + j] + P[H + j] * c_new, clip))
                CN[b, j] = c_new
                Y[t, b, j] = o * T.tanh(c_new)
            for b, j in T.grid(batch, H):
                HN[b, j] = Y[t, b, j]

    return lstm


def gru_kernel(hidden: int, reverse: bool, clip: float | None, linear_before_reset: bool):
    """One GRU direction; gate order z, r, h as in ONNX.

    ``XW`` already holds ``X·Wᵀ + Wb`` and, for z and r, ``+ Rb``; ``RBH`` is the recurrent bias
    of the h gate, which ``linear_before_reset`` puts inside the reset product.
    """
    H, G = hidden, 3 * hidden

    @T.prim_func(private=True, check_well_formed=False)
    def gru(xw_h: T.handle, r_h: T.handle, rbh_h: T.handle, h0_h: T.handle,
            y_h: T.handle, hn_h: T.handle, gates_h: T.handle):
        T.func_attr({"tirx.noalias": True, "tirx.is_scheduled": True})
        seq = T.int64()
        batch = T.int64()
        XW = T.match_buffer(xw_h, (seq, batch, G), "float32")
        R = T.match_buffer(r_h, (G, H), "float32")
        RBH = T.match_buffer(rbh_h, (H,), "float32")
        H0 = T.match_buffer(h0_h, (batch, H), "float32")
        Y = T.match_buffer(y_h, (seq, batch, H), "float32")
        HN = T.match_buffer(hn_h, (batch, H), "float32")
        # columns [0, 2H): z and r pre-activations; [2H, 3H): the h-gate recurrent term
        GATES = T.match_buffer(gates_h, (batch, G), "float32")
        for b, j in T.grid(batch, H):
            HN[b, j] = H0[b, j]
        for s in T.serial(seq):
            t: T.let[T.int64] = T.if_then_else(reverse, seq - 1 - s, s)
            for b, g in T.grid(batch, 2 * H):
                GATES[b, g] = XW[t, b, g]
                for k in T.serial(H):
                    GATES[b, g] = GATES[b, g] + HN[b, k] * R[g, k]
            for b, j in T.grid(batch, H):
                GATES[b, 2 * H + j] = T.float32(0)
                if linear_before_reset:
                    for k in T.serial(H):
                        GATES[b, 2 * H + j] = GATES[b, 2 * H + j] + HN[b, k] * R[2 * H + j, k]
                    GATES[b, 2 * H + j] = T.sigmoid(_clipped(GATES[b, H + j], clip)) * (
                        GATES[b, 2 * H + j] + RBH[j])
                else:
                    for k in T.serial(H):
                        GATES[b, 2 * H + j] = GATES[b, 2 * H + j] + (
                            T.sigmoid(_clipped(GATES[b, H + k], clip)) * HN[b, k] * R[2 * H + j, k])
                    GATES[b, 2 * H + j] = GATES[b, 2 * H + j] + RBH[j]
            for b, j in T.grid(batch, H):
                z = T.sigmoid(_clipped(GATES[b, j], clip))
                h_hat = T.tanh(_clipped(XW[t, b, 2 * H + j] + GATES[b, 2 * H + j], clip))
                Y[t, b, j] = (T.float32(1) - z) * h_hat + z * HN[b, j]
            for b, j in T.grid(batch, H):
                HN[b, j] = Y[t, b, j]

    return gru
