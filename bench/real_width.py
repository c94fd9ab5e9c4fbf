"""The models of real width row 9 optimizes (bench/optimize.py), built here with random weights.

- `bert`: a BERT-style encoder classifier in plain torch layers: token and position embeddings
  (vocabulary `Width.vocab`, 512 positions), LayerNorm, `layers` post-norm encoder layers (12-head
  self-attention written out as Linear/matmul/softmax, a GELU feed-forward of 4x the hidden size),
  BERT's pooler (tanh of a Linear on the first token) and a `LABELS`-way classifier. Input
  `input_ids` int64 [batch, seq] (batch and sequence dynamic), output `logits` [batch, LABELS].
- `resnet`: ResNet-18's shape: a 7x7/2 stem, max-pool, four stages of two basic blocks (3x3 convs
  with BatchNorm, a 1x1/2 projection where the shape changes) at 64/128/256/512 channels (x
  `Width.scale`), global average pool and a 1,000-way Linear. Input `image` float32
  [batch, 3, H, W], output `logits` [batch, 1000]. BatchNorm's running statistics are set by one
  forward pass in training mode on random images, so activations stay normalized as in a trained
  network (with the initial statistics every block only adds, and the logits grow with depth), and
  the classifier acts on the pooled features standardized over those images (folded into its
  weights), so random images fall into many classes (95 distinct in 100) rather than one or two.

`build(directory, width)` saves both with `torch.export.save` and brings them in through the
toolkit's own path (export/byom.py `export_byom`, as `export.all --from-torch FILE --name N`); it
reuses `directory` when it already holds them for the same widths (a `widths.json` beside them).
"""

from __future__ import annotations

import json
import logging
import math
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from oneneuron.schema import MANIFEST, Manifest

logger = logging.getLogger(__name__)
LABELS, CLASSES, POSITIONS = 3, 1000, 512
CALIBRATION_IMAGES = 32  # random images that set the ResNet's BatchNorm and classifier statistics
BUILD = 2  # the models' revision: a cache built by another revision is rebuilt
MODELS = ("bert", "resnet")


@dataclass(frozen=True)
class Width:
    """The widths of both models (the defaults are the real ones; tests use tiny ones)."""

    hidden: int = 768  # BERT hidden size
    layers: int = 4  # encoder layers
    heads: int = 12  # attention heads
    vocab: int = 30522  # BERT-base's vocabulary size
    scale: float = 1.0  # ResNet channels: 64/128/256/512 times this
    image: int = 224  # ResNet input height and width


def bert_module(w: Width):
    """The BERT-style classifier (module docstring), seeded, in eval mode."""
    import torch
    from torch import nn

    class Layer(nn.Module):
        def __init__(self):
            super().__init__()
            self.qkv, self.out = nn.Linear(w.hidden, 3 * w.hidden), nn.Linear(w.hidden, w.hidden)
            self.norm1, self.norm2 = nn.LayerNorm(w.hidden), nn.LayerNorm(w.hidden)
            self.up, self.down = nn.Linear(w.hidden, 4 * w.hidden), nn.Linear(4 * w.hidden, w.hidden)

        def forward(self, h):
            b, s, _ = h.shape
            q, k, v = self.qkv(h).view(b, s, 3, w.heads, w.hidden // w.heads).permute(2, 0, 3, 1, 4)
            att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(w.hidden // w.heads), -1)
            h = self.norm1(h + self.out((att @ v).transpose(1, 2).reshape(b, s, w.hidden)))
            return self.norm2(h + self.down(nn.functional.gelu(self.up(h))))

    class Bert(nn.Module):
        def __init__(self):
            super().__init__()
            self.tokens, self.positions = nn.Embedding(w.vocab, w.hidden), nn.Embedding(POSITIONS, w.hidden)
            self.norm = nn.LayerNorm(w.hidden)
            self.layers = nn.ModuleList(Layer() for _ in range(w.layers))
            self.pooler, self.classifier = nn.Linear(w.hidden, w.hidden), nn.Linear(w.hidden, LABELS)

        def forward(self, input_ids):
            positions = torch.arange(input_ids.shape[1], device=input_ids.device)
            h = self.norm(self.tokens(input_ids) + self.positions(positions))
            for layer in self.layers:
                h = layer(h)
            return {"logits": self.classifier(torch.tanh(self.pooler(h[:, 0])))}

    torch.manual_seed(0)
    model = Bert()
    for module in model.modules():  # BERT's initialisation: weights N(0, 0.02), biases 0
        if isinstance(module, nn.Linear | nn.Embedding):
            nn.init.normal_(module.weight, std=0.02)
        if isinstance(module, nn.Linear):
            nn.init.zeros_(module.bias)  # a random bias would decide the argmax of small logits
    return model.eval()


def resnet_module(w: Width):
    """The ResNet-18-shaped classifier (module docstring), seeded, in eval mode."""
    import torch
    from torch import nn

    def conv_bn(cin: int, cout: int, k: int, stride: int) -> list[nn.Module]:
        return [nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), nn.BatchNorm2d(cout)]

    class Block(nn.Module):
        def __init__(self, cin: int, cout: int, stride: int):
            super().__init__()
            self.a = nn.Sequential(*conv_bn(cin, cout, 3, stride), nn.ReLU())
            self.b = nn.Sequential(*conv_bn(cout, cout, 3, 1))
            changes = stride != 1 or cin != cout
            self.skip = nn.Sequential(*conv_bn(cin, cout, 1, stride)) if changes else nn.Identity()

        def forward(self, x):
            return torch.relu(self.b(self.a(x)) + self.skip(x))

    c = [max(1, round(n * w.scale)) for n in (64, 128, 256, 512)]
    layers: list[nn.Module] = [*conv_bn(3, c[0], 7, 2), nn.ReLU(), nn.MaxPool2d(3, 2, 1)]
    for i, cout in enumerate(c):
        cin = c[max(i - 1, 0)]
        layers += [Block(cin, cout, 1 if i == 0 else 2), Block(cout, cout, 1)]

    class ResNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(*layers)
            self.fc = nn.Linear(c[-1], CLASSES)

        def forward(self, image):
            return {"logits": self.fc(self.features(image).mean((2, 3)))}

    torch.manual_seed(0)
    model = ResNet()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = None  # a cumulative average: one pass sets the statistics of that pass
    images = torch.randn(CALIBRATION_IMAGES, 3, w.image, w.image)
    with torch.no_grad():
        model.train()
        model.features(images)
        model.eval()
        pooled = model.features(images).mean((2, 3))
        # the classifier on standardized features (still one Linear): a random network's pooled
        # features share one large common part, and the raw argmax is the same class for nearly
        # every image (measured: 1 to 2 distinct classes in 1,000), which makes agreement trivial
        mean, std = pooled.mean(0), pooled.std(0) + 1e-6
        model.fc.weight.div_(std)
        model.fc.bias.copy_(-model.fc.weight @ mean)
    return model


def inputs(name: str, w: Width, rows: int, seed: int, seq: int = 32) -> dict[str, np.ndarray]:
    """Random inputs: token ids uniform over the vocabulary, or N(0, 1) images (as normalized ones)."""
    rng = np.random.default_rng(seed)
    if name == "bert":
        return {"input_ids": rng.integers(0, w.vocab, (rows, seq)).astype(np.int64)}
    return {"image": rng.standard_normal((rows, 3, w.image, w.image)).astype(np.float32)}


def _save(module, path: Path, example: dict, dynamic: dict) -> None:
    import torch

    program = torch.export.export(module, (), kwargs=example, dynamic_shapes=dynamic)
    torch.export.save(program, path)


def _built(artifacts: Path, stamp: Path, w: Width) -> bool:
    if not (stamp.is_file() and (artifacts / MANIFEST).is_file()):
        return False
    if json.loads(stamp.read_text()) != asdict(w) | {"build": BUILD}:
        return False
    return set(MODELS) <= {e.model for e in Manifest.load(artifacts).entries("onnx")}


def build(directory: Path, w: Width) -> Path:
    """Both models brought in (export_byom) into `directory/artifacts`; returns that directory."""
    import torch

    from export.byom import ByomConfig, export_byom

    artifacts = directory / "artifacts"
    stamp = directory / "widths.json"
    if _built(artifacts, stamp, w):
        logger.info("reusing %s (built for %s)", artifacts, asdict(w))
        return artifacts
    if artifacts.is_dir():  # built for other widths or by another revision: start again
        shutil.rmtree(artifacts)
    directory.mkdir(parents=True, exist_ok=True)
    batch, seq = torch.export.Dim("batch"), torch.export.Dim("seq", min=2, max=POSITIONS)
    logger.info("building bert and resnet at %s in %s", asdict(w), directory)
    _save(
        bert_module(w),
        directory / "bert.pt2",
        {"input_ids": torch.randint(0, w.vocab, (2, 8))},
        {"input_ids": {0: batch, 1: seq}},
    )
    _save(
        resnet_module(w),
        directory / "resnet.pt2",
        {"image": torch.randn(2, 3, w.image, w.image)},
        {"image": {0: batch}},
    )
    export_byom(artifacts, ByomConfig("torch", directory / "bert.pt2", "bert", int_range=(0, w.vocab)))
    export_byom(artifacts, ByomConfig("torch", directory / "resnet.pt2", "resnet"))
    stamp.write_text(json.dumps(asdict(w) | {"build": BUILD}))
    return artifacts
