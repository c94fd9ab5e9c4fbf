"""Real architectures for the suite, written in plain torch and Keras (no model zoo), random weights
with fixed seeds (issue 20): each is saved as the file a practitioner brings (`.pt2` / `.keras`).

- `cnn`: Conv -> BatchNorm -> ReLU twice, global average pool, a linear head; image [batch, 3, 96, 96].
- `transformer`: token + position embeddings, 2 encoder layers (hidden 32, 2 heads) with an
  attention mask, mean pool, a 3-class head; input_ids and attention_mask int64 [batch, seq], the
  batch and the sequence dynamic (seq at most `MAX_SEQ`, the position table's size).
- `classifier_torch`, `classifier_keras`: 4 features -> 3-class softmax.
- `labels`: 4 features -> logits, their argmax (int64) and whether the best logit is > 0 (bool).

Small widths keep export and check fast; the shapes are what real models have.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

IMAGE = (3, 96, 96)
VOCAB, MAX_SEQ, HIDDEN = 50, 16, 32
FEATURES, CLASSES = 4, 3


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
    return _save(model, path, example, {"image": {0: batch}})


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
            self.head = nn.Linear(HIDDEN, CLASSES)

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
    return _save(model, path, example, shapes)


def classifier_torch(path: Path, seed: int = 0) -> Path:
    """4 features -> a 3-class softmax (probabilities [batch, 3]); `seed`: other random weights."""
    torch = _torch(seed)
    nn = torch.nn
    model = nn.Sequential(nn.Linear(FEATURES, 16), nn.ReLU(), nn.Linear(16, CLASSES), nn.Softmax(-1)).eval()

    class Named(nn.Module):  # the input's name in the signature: x
        def __init__(self):
            super().__init__()
            self.net = model

        def forward(self, x):
            return self.net(x)

    return _save(Named().eval(), path, {"x": torch.randn(2, FEATURES)}, {"x": {0: torch.export.Dim("batch")}})


def classifier_keras(path: Path) -> Path:
    """The same classifier in Keras: Dense(16, relu) -> Dense(3, softmax)."""
    from oneneuron.frameworks import quiet_tensorflow

    quiet_tensorflow()
    import keras

    keras.utils.set_random_seed(0)
    x = keras.Input((FEATURES,), name="x")
    hidden = keras.layers.Dense(16, activation="relu")(x)
    probs = keras.layers.Dense(CLASSES, activation="softmax", name="probs")(hidden)
    keras.Model(x, probs).save(path)
    return path


def labels(path: Path) -> Path:
    """4 features -> logits (float32 [batch, 3]), label (int64 [batch]) and positive (bool [batch])."""
    torch = _torch()
    nn = torch.nn

    class Labels(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(FEATURES, CLASSES)

        def forward(self, x):
            logits = self.linear(x)
            return {"logits": logits, "label": logits.argmax(-1), "positive": logits.amax(-1) > 0}

    batch = torch.export.Dim("batch")
    return _save(Labels().eval(), path, {"x": torch.randn(2, FEATURES)}, {"x": {0: batch}})


def inputs(name: str, rows: int = 3, seed: int = 1, seq: int = 7) -> dict:
    """Fresh inputs for architecture `name` (not the probe's): `rows` rows, `seq` tokens."""
    import numpy as np

    rng = np.random.default_rng(seed)
    if name == "cnn":
        return {"image": rng.standard_normal((rows, *IMAGE)).astype(np.float32)}
    if name == "transformer":
        mask = np.ones((rows, seq), np.int64)
        mask[0, seq // 2 :] = 0  # one padded row
        return {"input_ids": rng.integers(0, VOCAB, (rows, seq)), "attention_mask": mask}
    return {"x": rng.standard_normal((rows, FEATURES)).astype(np.float32)}


def source_outputs(path: Path, feeds: dict) -> dict:
    """What the source framework computes on `feeds` ({output name: array}; a lone torch output: "output")."""
    import numpy as np

    if path.suffix == ".keras":
        import keras

        model = keras.saving.load_model(path)
        return {"probs": np.asarray(model.predict(feeds["x"], verbose=0))}
    import torch

    with torch.no_grad():
        out = torch.export.load(path).module()(**{k: torch.from_numpy(v) for k, v in feeds.items()})
    return {k: v.numpy() for k, v in out.items()} if isinstance(out, dict) else {"output": out.numpy()}


def _save(module, path: Path, example: dict, shapes: dict) -> Path:
    import torch

    program = torch.export.export(module, (), kwargs=example, dynamic_shapes=shapes)
    torch.export.save(program, path)
    return path


# name -> (framework, builder, file suffix): what the session fixture exports (tests/conftest.py)
ARCHITECTURES: dict[str, tuple[str, Callable[[Path], Path], str]] = {
    "cnn": ("torch", cnn, ".pt2"),
    "transformer": ("torch", transformer, ".pt2"),
    "classifier_torch": ("torch", classifier_torch, ".pt2"),
    "classifier_keras": ("keras", classifier_keras, ".keras"),
    "labels": ("torch", labels, ".pt2"),
}
