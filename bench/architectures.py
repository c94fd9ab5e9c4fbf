"""The CNN and the transformer of issue 20, shared by the suite and the benchmark rows that time them.

Written in plain torch with random weights and fixed seeds (no model zoo), saved as the `.pt2`
program a practitioner brings (`torch.export.save`):

- `cnn`: Conv -> BatchNorm -> ReLU three times, global average pool, a linear head; input `image`
  float32 [batch, 3, 96, 96] (batch dynamic), logits [batch, 5].
- `transformer`: token + position embeddings, 2 encoder layers (hidden 32, 2 heads) with an
  attention mask, mean pool, a 3-class head; `input_ids` and `attention_mask` int64 [batch, seq],
  the batch and the sequence dynamic (seq at most `MAX_SEQ`, the position table's size).

They live here, not in tests/, because the benchmarks never import the suite (the suite imports
bench/, as bench/_server.py); tests/architectures.py takes them from here with the suite's other
models. `architecture_artifacts(dir)` brings both in through the toolkit's own path (export/byom.py
`export_byom`, as `export.all --from-torch FILE --name N`) for bench rows 4 and 6, reusing `dir`,
or the directory an earlier call in this process exported into, when it holds them.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from oneneuron.schema import MANIFEST, Manifest

IMAGE = (3, 96, 96)
VOCAB, MAX_SEQ, HIDDEN, LABELS = 50, 16, 32, 3
MODELS = ("cnn", "transformer")
_built: list[Path] = []  # the directory this process exported into


def _torch(seed: int = 0):
    import torch

    torch.manual_seed(seed)
    return torch


def cnn(path: Path) -> Path:
    """A BatchNorm CNN on 3x96x96 images -> logits [batch, 5]; BatchNorm statistics made non-trivial."""
    torch = _torch()
    nn = torch.nn

    def block(cin: int, cout: int) -> list:
        return [nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]

    class Cnn(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(*block(3, 8), *block(8, 16), *block(16, 16))
            self.head = nn.Linear(16, 5)

        def forward(self, image):
            return self.head(self.features(image).mean((2, 3)))

    model = Cnn().eval()
    with torch.no_grad():  # as after training: running statistics other than 0 and 1
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    batch = torch.export.Dim("batch")
    example = {"image": torch.randn(2, *IMAGE)}
    return save_program(model, path, example, {"image": {0: batch}})


def transformer(path: Path) -> Path:
    """A BERT-style encoder classifier: input_ids + attention_mask (int64, 1 = token) -> logits [batch, 3]."""
    torch = _torch()
    nn = torch.nn

    class Layer(nn.Module):
        def __init__(self):
            super().__init__()
            self.qkv, self.out = nn.Linear(HIDDEN, 3 * HIDDEN), nn.Linear(HIDDEN, HIDDEN)
            self.ff = nn.Sequential(nn.Linear(HIDDEN, 2 * HIDDEN), nn.GELU(), nn.Linear(2 * HIDDEN, HIDDEN))
            self.norm1, self.norm2 = nn.LayerNorm(HIDDEN), nn.LayerNorm(HIDDEN)

        def forward(self, h, bias):
            b, s, _ = h.shape
            q, k, v = self.qkv(h).view(b, s, 3, 2, HIDDEN // 2).permute(2, 0, 3, 1, 4)
            scores = q @ k.transpose(-1, -2) / (HIDDEN // 2) ** 0.5 + bias
            attended = (scores.softmax(-1) @ v).transpose(1, 2).reshape(b, s, HIDDEN)
            h = self.norm1(h + self.out(attended))
            return self.norm2(h + self.ff(h))

    class Encoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.tokens, self.positions = nn.Embedding(VOCAB, HIDDEN), nn.Embedding(MAX_SEQ, HIDDEN)
            self.layers = nn.ModuleList([Layer(), Layer()])
            self.head = nn.Linear(HIDDEN, LABELS)

        def forward(self, input_ids, attention_mask):
            seq = input_ids.shape[1]
            h = self.tokens(input_ids) + self.positions.weight[:seq]
            keep = (attention_mask > 0).to(h.dtype)
            bias = (1.0 - keep)[:, None, None, :] * -1e4  # as BERT: masked keys get a large negative score
            for layer in self.layers:
                h = layer(h, bias)
            pooled = (h * keep[..., None]).sum(1) / keep.sum(1, keepdim=True).clamp(min=1.0)
            return self.head(pooled)

    model = Encoder().eval()
    batch, seq = torch.export.Dim("batch"), torch.export.Dim("seq", max=MAX_SEQ)
    example = {
        "input_ids": torch.randint(0, VOCAB, (2, 5)),
        "attention_mask": torch.ones(2, 5, dtype=torch.int64),
    }
    shapes = {"input_ids": {0: batch, 1: seq}, "attention_mask": {0: batch, 1: seq}}
    return save_program(model, path, example, shapes)


def save_program(module, path: Path, example: dict, shapes: dict) -> Path:
    """`torch.export` of `module` on keyword inputs `example` with `shapes` dynamic, saved to `path`."""
    import torch

    program = torch.export.export(module, (), kwargs=example, dynamic_shapes=shapes)
    torch.export.save(program, path)
    return path


def _exported(artifacts: Path) -> bool:
    if not (artifacts / MANIFEST).is_file():
        return False
    manifest = Manifest.load(artifacts)
    return all(manifest.find(name, "onnx") is not None for name in MODELS)


def architecture_artifacts(artifacts: Path) -> Path:
    """Export the CNN and the transformer into `artifacts` (once per process); returns the directory."""
    for earlier in [*_built, artifacts]:
        if _exported(earlier):
            return earlier
    from export.byom import ByomConfig, export_byom

    with tempfile.TemporaryDirectory(prefix="bench-architectures-") as tmp:
        for name, build in (("cnn", cnn), ("transformer", transformer)):
            export_byom(artifacts, ByomConfig("torch", build(Path(tmp) / f"{name}.pt2"), name))
    _built.append(artifacts)
    return artifacts


def onnx_path(artifacts: Path, name: str) -> Path:
    """The ONNX file the manifest in `artifacts` names for model `name` (what `serve.load` opens)."""
    return artifacts / Manifest.load(artifacts).find(name, "onnx").path


def example_feeds(name: str, batch: int) -> dict[str, np.ndarray]:
    """Seeded inputs for `name` at `batch` rows, as the model takes them: images of N(0, 1) values,
    or `MAX_SEQ` token ids with the last quarter of every other row masked out (padding)."""
    rng = np.random.default_rng(batch)
    if name == "cnn":
        return {"image": rng.standard_normal((batch, *IMAGE)).astype(np.float32)}
    mask = np.ones((batch, MAX_SEQ), np.int64)
    mask[::2, -MAX_SEQ // 4 :] = 0
    return {"input_ids": rng.integers(0, VOCAB, (batch, MAX_SEQ)), "attention_mask": mask}
