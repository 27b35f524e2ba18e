"""A Llama-style decoder (4 layers, hidden 1024, random weights) in plain PyTorch, compiled by
edgec in fp32 and with ``--quantize int4``, run on the host and compared with PyTorch.

    python examples/llama_int4.py [--layers 4] [--hidden 1024] [--seq 32] [--awq] [--runs 10]
"""

from __future__ import annotations

import math
import time

import click
import numpy as np
import torch
from torch import nn


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rotary(x, cos, sin):
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    return x * cos + torch.cat([-x2, x1], dim=-1) * sin


class Attention(nn.Module):
    def __init__(self, hidden: int, heads: int):
        super().__init__()
        self.heads, self.head_dim = heads, hidden // heads
        self.q_proj = nn.Linear(hidden, hidden, bias=False)
        self.k_proj = nn.Linear(hidden, hidden, bias=False)
        self.v_proj = nn.Linear(hidden, hidden, bias=False)
        self.o_proj = nn.Linear(hidden, hidden, bias=False)

    def forward(self, x, cos, sin, mask):
        b, s, _ = x.shape
        q, k, v = (p(x).view(b, s, self.heads, self.head_dim).transpose(1, 2)
                   for p in (self.q_proj, self.k_proj, self.v_proj))
        q, k = rotary(q, cos, sin), rotary(k, cos, sin)
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(self.head_dim) + mask, dim=-1)
        return self.o_proj((att @ v).transpose(1, 2).reshape(b, s, -1))


class MLP(nn.Module):
    def __init__(self, hidden: int, ffn: int):
        super().__init__()
        self.gate_proj = nn.Linear(hidden, ffn, bias=False)
        self.up_proj = nn.Linear(hidden, ffn, bias=False)
        self.down_proj = nn.Linear(ffn, hidden, bias=False)

    def forward(self, x):
        return self.down_proj(nn.functional.silu(self.gate_proj(x)) * self.up_proj(x))


class Layer(nn.Module):
    def __init__(self, hidden: int, heads: int, ffn: int):
        super().__init__()
        self.input_norm, self.post_norm = RMSNorm(hidden), RMSNorm(hidden)
        self.attn, self.mlp = Attention(hidden, heads), MLP(hidden, ffn)

    def forward(self, x, cos, sin, mask):
        x = x + self.attn(self.input_norm(x), cos, sin, mask)
        return x + self.mlp(self.post_norm(x))


class Decoder(nn.Module):
    def __init__(self, layers=4, hidden=1024, heads=16, ffn=2816, vocab=4096, seq=32):
        super().__init__()
        self.embed = nn.Embedding(vocab, hidden)
        self.layers = nn.ModuleList(Layer(hidden, heads, ffn) for _ in range(layers))
        self.norm = RMSNorm(hidden)
        self.lm_head = nn.Linear(hidden, vocab, bias=False)
        head_dim = hidden // heads
        inv = 1.0 / (10000 ** (torch.arange(0, head_dim, 2).float() / head_dim))
        angles = torch.outer(torch.arange(seq).float(), inv)
        angles = torch.cat([angles, angles], dim=-1)
        self.register_buffer("cos", angles.cos())
        self.register_buffer("sin", angles.sin())
        self.register_buffer("mask", torch.full((seq, seq), -1e9).triu(1))

    def forward(self, ids):
        x = self.embed(ids)
        for layer in self.layers:
            x = layer(x, self.cos, self.sin, self.mask)
        return self.lm_head(self.norm(x))


def _median_ms(run, runs: int) -> float:
    run()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return float(np.median(times)) * 1e3


@click.command()
@click.option("--layers", default=4, show_default=True)
@click.option("--hidden", default=1024, show_default=True)
@click.option("--seq", default=32, show_default=True)
@click.option("--awq", is_flag=True, help="Calibrate (AWQ) on random token sequences.")
@click.option("--group", type=click.Choice(["32", "64", "128"]), default="128", show_default=True)
@click.option("--symmetric", is_flag=True, help="Symmetric int4 groups.")
@click.option("--embeddings", is_flag=True, help="Quantize the embedding table too (int4 gather).")
@click.option("--verify", is_flag=True, help="Check the int4 artifact against PyTorch on the dequantized weights.")
@click.option("--runs", default=10, show_default=True)
def main(layers, hidden, seq, awq, group, symmetric, embeddings, verify, runs):
    import os
    import tempfile

    import edgec

    torch.manual_seed(0)
    model = Decoder(layers=layers, hidden=hidden, ffn=hidden * 11 // 4 // 64 * 64, seq=seq).eval()
    for p in model.parameters():  # Llama-like weight scale
        nn.init.normal_(p, std=0.02) if p.dim() > 1 else None
    ids = np.random.default_rng(0).integers(0, 4096, (1, seq)).astype("int64")
    with torch.no_grad():
        ref = model(torch.from_numpy(ids)).numpy()
    inputs = {"ids": ((1, seq), "int64")}

    fp32 = edgec.compile(model, "host", inputs)
    with tempfile.TemporaryDirectory() as tmp:
        calibration = None
        if awq:
            calibration = os.path.join(tmp, "calib.npz")
            np.savez(calibration, ids=np.random.default_rng(1).integers(0, 4096, (4, 1, seq)).astype("int64"))
        int4 = edgec.compile(model, "host", inputs, quantize="int4", calibration=calibration, int4_group=int(group),
                             int4_symmetric=symmetric, int4_embeddings=embeddings, verify=verify)
    for note in int4.report.notes:
        print(note)
    if verify:
        v = int4.verification
        print(f"verify ({v.how}): {'ok' if v.ok else 'NOT OK: ' + v.note}")
    feeds = {"ids": ids}
    out32, out4 = fp32.run(feeds), int4.run(feeds)
    (y32,), (y4,) = out32.values(), out4.values()
    rel = lambda y: float(np.linalg.norm(y - ref) / np.linalg.norm(ref))  # noqa: E731
    same_top1 = float(np.mean(y4.argmax(-1) == ref.argmax(-1)))
    print(f"fp32 vs PyTorch: relative L2 {rel(y32):.2e}")
    print(f"int4 vs PyTorch: relative L2 {rel(y4):.3f}, top-1 token agreement {same_top1:.0%}")
    w32 = sum(np.prod(w["shape"]) * np.dtype(w["dtype"]).itemsize for w in fp32.manifest["weights"])
    w4 = sum(np.prod(w["shape"]) * np.dtype(w["dtype"]).itemsize for w in int4.manifest["weights"])
    print(f"artifact weights: fp32 {w32 / 2**20:.1f} MiB, int4 {w4 / 2**20:.1f} MiB")
    from edgec.runtime import runner_for

    r32, r4 = runner_for(fp32), runner_for(int4)
    t32 = _median_ms(lambda: r32.time(feeds, 1, 0), runs)
    t4 = _median_ms(lambda: r4.time(feeds, 1, 0), runs)
    print(f"latency (seq {seq}): fp32 {t32:.1f} ms, int4 {t4:.1f} ms ({t32 / t4:.2f}x)")


if __name__ == "__main__":
    main()
