"""Real architectures for the suite, written in plain torch and Keras (no model zoo), random weights
with fixed seeds (issue 20): each is saved as the file a practitioner brings (`.pt2` / `.keras`).

- `cnn`, `transformer` (defined in bench/architectures.py, which bench rows 4 and 6 time): a BatchNorm
  CNN on images [batch, 3, 96, 96]; a BERT-style encoder with an attention mask, input_ids and
  attention_mask int64 [batch, seq], the batch and the sequence dynamic (seq at most `MAX_SEQ`).
- `classifier_torch`, `classifier_keras`: 4 features -> 3-class softmax.
- `labels`: 4 features -> logits, their argmax (int64) and whether the best logit is > 0 (bool).

Small widths keep export and check fast; the shapes are what real models have.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

# The CNN and the transformer are bench rows 4 and 6's too: bench/ holds them, as bench never imports
# tests/. MAX_SEQ is re-exported for tests/test_architectures.py.
from bench.architectures import IMAGE, MAX_SEQ, VOCAB, cnn, save_program, transformer  # noqa: F401

FEATURES, CLASSES = 4, 3


def _torch(seed: int = 0):
    import torch

    torch.manual_seed(seed)
    return torch


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

    batch = torch.export.Dim("batch")
    return save_program(Named().eval(), path, {"x": torch.randn(2, FEATURES)}, {"x": {0: batch}})


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
    return save_program(Labels().eval(), path, {"x": torch.randn(2, FEATURES)}, {"x": {0: batch}})


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


# name -> (framework, builder, file suffix): what the session fixture exports (tests/conftest.py)
ARCHITECTURES: dict[str, tuple[str, Callable[[Path], Path], str]] = {
    "cnn": ("torch", cnn, ".pt2"),
    "transformer": ("torch", transformer, ".pt2"),
    "classifier_torch": ("torch", classifier_torch, ".pt2"),
    "classifier_keras": ("keras", classifier_keras, ".keras"),
    "labels": ("torch", labels, ".pt2"),
}
