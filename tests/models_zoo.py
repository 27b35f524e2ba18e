"""Models in the shapes of real third-party exports, exported with PyTorch's legacy TorchScript
exporter (``dynamo=False``) and dynamic axes.

That exporter writes the graphs edge users actually bring: ``Shape → Gather → Unsqueeze → Concat →
Reshape`` chains for every ``view``, LSTMs whose initial states are built from the input's shape,
Resize nodes whose sizes are computed, and ``If`` nodes from scripted control flow.

Each entry of :data:`ZOO` builds a model, exports it, and says how to make inputs for it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F


def _cbr(cin, cout, k=3, stride=1):
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


# -- (a) OCR text detection: DBNet-style --------------------------------------------------------


class DBNet(nn.Module):
    """Backbone at strides 4/8/16/32, an FPN that upsamples and concatenates, a sigmoid map head."""

    def __init__(self, c=16):
        super().__init__()
        self.stem = nn.Sequential(_cbr(3, c, 3, 2), _cbr(c, c, 3, 2))
        self.s8, self.s16, self.s32 = _cbr(c, 2 * c, 3, 2), _cbr(2 * c, 4 * c, 3, 2), _cbr(4 * c, 8 * c, 3, 2)
        self.lat = nn.ModuleList([nn.Conv2d(ch, c, 1) for ch in (c, 2 * c, 4 * c, 8 * c)])
        self.smooth = nn.ModuleList([nn.Conv2d(c, c // 4, 3, padding=1) for _ in range(4)])
        self.head = nn.Sequential(
            _cbr(c, c // 4), nn.ConvTranspose2d(c // 4, c // 4, 2, 2), nn.BatchNorm2d(c // 4), nn.ReLU(),
            nn.ConvTranspose2d(c // 4, 1, 2, 2),
        )

    def forward(self, x):
        c2 = self.stem(x)
        c3 = self.s8(c2)
        c4 = self.s16(c3)
        c5 = self.s32(c4)
        in5, in4, in3, in2 = (lat(f) for lat, f in zip(reversed(self.lat), (c5, c4, c3, c2)))
        # mmocr-style top-down path: upsample to the lateral's computed size
        out4 = in4 + F.interpolate(in5, size=in4.shape[2:], mode="nearest")
        out3 = in3 + F.interpolate(out4, size=in3.shape[2:], mode="nearest")
        out2 = in2 + F.interpolate(out3, size=in2.shape[2:], mode="nearest")
        p5, p4, p3, p2 = (s(f) for s, f in zip(self.smooth, (in5, out4, out3, out2)))
        # PaddleOCR-style: fixed scale factors back to stride 4
        p5 = F.interpolate(p5, scale_factor=8, mode="nearest")
        p4 = F.interpolate(p4, scale_factor=4, mode="nearest")
        p3 = F.interpolate(p3, scale_factor=2, mode="nearest")
        fuse = torch.cat([p5, p4, p3, p2], dim=1)
        return torch.sigmoid(self.head(fuse))


# -- (b) OCR recognition: CRNN ------------------------------------------------------------------


class CRNN(nn.Module):
    """Conv backbone that collapses height to 1, then a 2-layer BiLSTM, a linear and log-softmax."""

    def __init__(self, classes=37, hidden=32):
        super().__init__()
        self.cnn = nn.Sequential(
            _cbr(1, 16), nn.MaxPool2d(2, 2), _cbr(16, 32), nn.MaxPool2d(2, 2),
            _cbr(32, 64), nn.MaxPool2d((2, 1), (2, 1)), _cbr(64, 64), nn.MaxPool2d((4, 1), (4, 1)),
        )
        self.rnn = nn.LSTM(64, hidden, num_layers=2, bidirectional=True)
        self.fc = nn.Linear(2 * hidden, classes)

    def forward(self, x):
        conv = self.cnn(x)
        b, c, h, w = conv.size()
        conv = conv.view(b, c * h, w).permute(2, 0, 1)  # (width, batch, channels)
        seq, _ = self.rnn(conv)
        t, b, hid = seq.size()
        out = self.fc(seq.view(t * b, hid)).view(t, b, -1)
        return F.log_softmax(out, dim=2)


# -- (c) OCR direction classifier ---------------------------------------------------------------


class DirectionClassifier(nn.Module):
    """PaddleOCR's cls model shape: small CNN, flatten with ``x.view(x.size(0), -1)``, softmax."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            _cbr(3, 8, 3, 2), _cbr(8, 16, 3, 2), _cbr(16, 32, 3, 2), _cbr(32, 32, 3, 2), nn.AvgPool2d((3, 12)),
        )
        self.fc = nn.Linear(32, 2)

    def forward(self, x):
        x = self.features(x)
        x = x.view(x.size(0), -1)
        return F.softmax(self.fc(x), dim=1)


# -- (d) audio: conv front end, LSTM, data-dependent branch -------------------------------------


@torch.jit.script
def _condition(wav: torch.Tensor) -> torch.Tensor:
    # The branch depends on the data, so the exporter keeps it as an ONNX If.
    if bool(wav.mean() > 0.0):
        return wav * 0.5
    return wav * -2.0 + 1.0


class AudioLSTM(nn.Module):
    """A VAD-like model: strided 1-D convs on a waveform, a branch on its mean, an LSTM, a sigmoid."""

    def __init__(self, hidden=32):
        super().__init__()
        self.frontend = nn.Sequential(
            nn.Conv1d(1, 16, 16, stride=8), nn.ReLU(), nn.Conv1d(16, 32, 4, stride=2), nn.ReLU(),
        )
        self.rnn = nn.LSTM(32, hidden, batch_first=True)
        self.out = nn.Linear(hidden, 1)

    def forward(self, wav):
        feats = self.frontend(_condition(wav).unsqueeze(1)).transpose(1, 2)  # (batch, frames, 32)
        seq, _ = self.rnn(feats)
        return torch.sigmoid(self.out(seq)).squeeze(-1)


@torch.jit.script
def _fit_clip(wav: torch.Tensor) -> torch.Tensor:
    # A branch on the input's length: dynamic with a symbolic dim, a constant once it is pinned.
    if wav.size(1) > 1000:
        return wav * 0.5
    return wav * 2.0 - 0.1


class ClipLevel(nn.Module):
    """Loudness model whose preprocessing depends on the clip length (an If on a shape)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(1, 8, 32, stride=16)
        self.out = nn.Linear(8, 3)

    def forward(self, wav):
        feats = torch.relu(self.conv(_fit_clip(wav).unsqueeze(1))).mean(dim=2)
        return self.out(feats)


class GRUTagger(nn.Module):
    """A GRU counterpart of the audio model (keyword spotting shape), bidirectional."""

    def __init__(self, hidden=24):
        super().__init__()
        self.proj = nn.Linear(20, 32)
        self.rnn = nn.GRU(32, hidden, batch_first=True, bidirectional=True, num_layers=2)
        self.out = nn.Linear(2 * hidden, 5)

    def forward(self, mfcc):
        seq, _ = self.rnn(torch.tanh(self.proj(mfcc)))
        return self.out(seq)


# -- (e) BERT-style encoder ---------------------------------------------------------------------


class BertLayer(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads, self.head_dim = heads, dim // heads
        self.q, self.k, self.v, self.o = (nn.Linear(dim, dim) for _ in range(4))
        self.ln1, self.ln2 = nn.LayerNorm(dim, eps=1e-12), nn.LayerNorm(dim, eps=1e-12)
        self.ff1, self.ff2 = nn.Linear(dim, 4 * dim), nn.Linear(4 * dim, dim)

    def split_heads(self, x):
        # HuggingFace's transpose_for_scores: x.size()[:-1] + (heads, head_dim)
        new_shape = x.size()[:-1] + (self.heads, self.head_dim)
        return x.view(new_shape).permute(0, 2, 1, 3)

    def forward(self, x, mask):
        q, k, v = self.split_heads(self.q(x)), self.split_heads(self.k(x)), self.split_heads(self.v(x))
        scores = torch.matmul(q, k.transpose(-1, -2)) / (self.head_dim ** 0.5) + mask
        ctx = torch.matmul(torch.softmax(scores, dim=-1), v).permute(0, 2, 1, 3).contiguous()
        ctx = ctx.view(ctx.size()[:-2] + (self.heads * self.head_dim,))
        x = self.ln1(x + self.o(ctx))
        return self.ln2(x + self.ff2(F.gelu(self.ff1(x))))


class BertEncoder(nn.Module):
    def __init__(self, vocab=500, dim=64, heads=4, layers=2, max_pos=128):
        super().__init__()
        self.word = nn.Embedding(vocab, dim)
        self.position = nn.Embedding(max_pos, dim)
        self.token_type = nn.Embedding(2, dim)
        self.ln = nn.LayerNorm(dim, eps=1e-12)
        self.layers = nn.ModuleList([BertLayer(dim, heads) for _ in range(layers)])
        self.pool = nn.Linear(dim, dim)

    def forward(self, input_ids, attention_mask):
        seq_len = input_ids.size(1)
        position_ids = torch.arange(seq_len, dtype=torch.long).unsqueeze(0).expand_as(input_ids)
        token_types = torch.zeros_like(input_ids)
        x = self.ln(self.word(input_ids) + self.position(position_ids) + self.token_type(token_types))
        ext = attention_mask[:, None, None, :].to(x.dtype)
        ext = (1.0 - ext) * -10000.0
        for layer in self.layers:
            x = layer(x, ext)
        return x, torch.tanh(self.pool(x[:, 0]))


# -- the zoo ------------------------------------------------------------------------------------


@dataclass
class ZooModel:
    name: str
    build: callable
    # input name -> (shape with symbolic dims as names, dtype)
    inputs: dict
    outputs: list
    dynamic_axes: dict
    opset: int = 13
    # two concrete bindings of the symbolic dims, to run one artifact at two sizes
    sizes: tuple = ({}, {})
    rtol: float = 1e-3
    atol: float = 1e-4
    notes: list = field(default_factory=list)

    def feeds(self, dims: dict, seed: int = 0) -> dict:
        rng = np.random.default_rng(seed)
        out = {}
        for name, (shape, dtype) in self.inputs.items():
            concrete = tuple(d if isinstance(d, int) else dims[d] for d in shape)
            if name == "input_ids":
                out[name] = rng.integers(0, 500, size=concrete).astype(np.int64)
            elif name == "attention_mask":
                mask = np.ones(concrete, dtype=np.int64)
                mask[:, concrete[1] // 2 + 1:] = 0  # padded tail, as a tokenizer would give
                out[name] = mask
            else:
                out[name] = rng.standard_normal(concrete).astype(dtype)
        return out

    def export(self, folder: str) -> str:
        import onnx

        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, f"{self.name}.onnx")
        if os.path.exists(path):
            return path
        model = _seeded(self.build)
        example = self.feeds(self.sizes[0])
        args = tuple(torch.from_numpy(example[n]) for n in self.inputs)
        tmp = path + ".tmp"
        torch.onnx.export(
            model, args, tmp, input_names=list(self.inputs), output_names=self.outputs,
            dynamic_axes=self.dynamic_axes, opset_version=self.opset, dynamo=False,
        )
        proto = onnx.load(tmp)
        proto.ir_version = 10  # onnxruntime 1.31 refuses the IR version onnx 1.23 writes
        onnx.save(proto, tmp)
        os.replace(tmp, path)
        return path


def _seeded(ctor) -> nn.Module:
    torch.manual_seed(0)
    model = ctor()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return model.eval()


ZOO: dict[str, ZooModel] = {m.name: m for m in [
    ZooModel(
        "dbnet", DBNet, {"x": (("batch", 3, "height", "width"), "float32")}, ["maps"],
        {"x": {0: "batch", 2: "height", 3: "width"}, "maps": {0: "batch", 2: "height", 3: "width"}},
        opset=11, sizes=({"batch": 1, "height": 64, "width": 96}, {"batch": 2, "height": 96, "width": 64}),
    ),
    ZooModel(
        "crnn", CRNN, {"x": (("batch", 1, 32, "width"), "float32")}, ["log_probs"],
        {"x": {0: "batch", 3: "width"}, "log_probs": {0: "steps", 1: "batch"}},
        opset=12, sizes=({"batch": 1, "width": 100}, {"batch": 2, "width": 64}),
        # two stacked BiLSTMs over up to 25 steps: float32 sums in a different order than onnxruntime
        rtol=1e-3, atol=2e-4,
    ),
    ZooModel(
        "ocr_cls", DirectionClassifier, {"x": (("batch", 3, 48, 192), "float32")}, ["probs"],
        {"x": {0: "batch"}, "probs": {0: "batch"}},
        opset=11, sizes=({"batch": 1}, {"batch": 3}),
    ),
    ZooModel(
        "audio_lstm", AudioLSTM, {"wav": (("batch", "samples"), "float32")}, ["speech_prob"],
        {"wav": {0: "batch", 1: "samples"}, "speech_prob": {0: "batch", 1: "frames"}},
        opset=14, sizes=({"batch": 1, "samples": 800}, {"batch": 2, "samples": 1200}),
        rtol=1e-3, atol=2e-4,
    ),
    ZooModel(
        "clip_level", ClipLevel, {"wav": (("batch", "samples"), "float32")}, ["levels"],
        {"wav": {0: "batch", 1: "samples"}, "levels": {0: "batch"}},
        # the two sizes take the two branches
        opset=13, sizes=({"batch": 1, "samples": 1200}, {"batch": 2, "samples": 800}),
    ),
    ZooModel(
        "gru_tagger", GRUTagger, {"mfcc": (("batch", "frames", 20), "float32")}, ["logits"],
        {"mfcc": {0: "batch", 1: "frames"}, "logits": {0: "batch", 1: "frames"}},
        opset=13, sizes=({"batch": 1, "frames": 30}, {"batch": 2, "frames": 17}),
        rtol=1e-3, atol=2e-4,
    ),
] + [
    # opset 14 spells LayerNorm out (ReduceMean, Sub, Pow, Sqrt...); 17 exports LayerNormalization
    ZooModel(
        name, BertEncoder,
        {"input_ids": (("batch", "seq"), "int64"), "attention_mask": (("batch", "seq"), "int64")},
        ["last_hidden_state", "pooled"],
        {"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"},
         "last_hidden_state": {0: "batch", 1: "seq"}, "pooled": {0: "batch"}},
        opset=opset, sizes=({"batch": 1, "seq": 16}, {"batch": 2, "seq": 24}),
    )
    for name, opset in (("bert", 14), ("bert_opset17", 17))
]}
