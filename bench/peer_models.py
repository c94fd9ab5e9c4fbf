"""The real-cost models bench/peers.py serves on every server: a wide MLP and the suite's CNN.

- `wide_mlp`: 1,024 float inputs, three 1024-wide Linear + ReLU layers, a one-output head (~12 MB
  of float32 weights: a batch-1 call is bound by reading them, which a batch shares). Input `x`
  float32 [batch, 1024], output [batch, 1]. (One output column: on main, `python -m serve` answers
  500 to V2 infer on a model with one float [batch, n] input and one output of more than one
  column, since serve/model.py `predict` expects (rows, 1); the head's width does not change the
  cost measured here.)
- `cnn`: tests/architectures.py's BatchNorm CNN (3x96x96 images, Conv -> BatchNorm -> ReLU three
  times, global average pool, a 5-way head). Input `image` float32 [batch, 3, 96, 96].

Both are written in plain torch with fixed seeds, saved with `torch.export.save` and brought in
through the toolkit's own path (export/byom.py `export_byom`), each into its own artifacts
directory under `cache` (reused while `BUILD` is unchanged): ours serves that directory, the peers
the very ONNX file it holds. `bare_rows_per_s` times that file in a bare onnxruntime session (one
intra-op thread, as every server here) at a given batch size: what the batcher's batches could
reach with no serving around them.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from oneneuron.schema import MANIFEST, Manifest

BUILD = 2  # the models' revision: a cache built by another revision is rebuilt
WIDTH, FEATURES, OUTPUTS = 1024, 1024, 1


@dataclass(frozen=True)
class RealModel:
    """One model as every server gets it."""

    name: str  # the model's name on every server
    artifacts: Path  # ours serves this directory
    onnx: Path  # the peers serve this file (the one in `artifacts`)
    input: str  # the input tensor's name
    shape: tuple[int, ...]  # one row's shape (without the batch dimension)

    def rows(self, n: int, seed: int = 0) -> np.ndarray:
        """`n` rows of float32 inputs, rounded to 3 decimals (shorter JSON, the same for everyone)."""
        x = np.random.default_rng(seed).standard_normal((n, *self.shape))
        return np.round(x, 3).astype(np.float32)

    def v2_json(self) -> str:
        """A V2 JSON infer request body of one row."""
        x = self.rows(1)
        data = np.round(x.ravel().astype(np.float64), 3).tolist()  # 0.123, not float32's 0.12300000339...
        tensor = {"name": self.input, "shape": list(x.shape), "datatype": "FP32", "data": data}
        return json.dumps({"inputs": [tensor]}, separators=(",", ":"))


def _wide_mlp(path: Path) -> Path:
    import torch
    from torch import nn

    torch.manual_seed(0)

    class WideMlp(nn.Module):
        def __init__(self):
            super().__init__()
            layers: list[nn.Module] = []
            for i in range(3):
                layers += [nn.Linear(FEATURES if i == 0 else WIDTH, WIDTH), nn.ReLU()]
            self.body, self.head = nn.Sequential(*layers), nn.Linear(WIDTH, OUTPUTS)

        def forward(self, x):
            return self.head(self.body(x))

    program = torch.export.export(
        WideMlp().eval(),
        (),
        kwargs={"x": torch.randn(2, FEATURES)},
        dynamic_shapes={"x": {0: torch.export.Dim("batch")}},
    )
    torch.export.save(program, path)
    return path


def _cnn(path: Path) -> Path:
    from tests import architectures  # the suite's CNN itself, not a copy

    return architectures.cnn(path)


BUILDERS = {"wide_mlp": (_wide_mlp, "x", (FEATURES,)), "cnn": (_cnn, "image", (3, 96, 96))}


def build(cache: Path, name: str) -> RealModel:
    """`name`'s artifacts under `cache`/models/`name` (built once per `BUILD`)."""
    builder, input_name, shape = BUILDERS[name]
    root = cache / "models" / name
    artifacts, stamp = root / "artifacts", root / "build.json"
    if not (stamp.is_file() and json.loads(stamp.read_text()) == {"build": BUILD}):
        import shutil

        from export.byom import ByomConfig, export_byom

        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        export_byom(artifacts, ByomConfig("torch", builder(root / f"{name}.pt2"), name))
        stamp.write_text(json.dumps({"build": BUILD}))
    entry = Manifest.load(artifacts).find(name, "onnx")
    assert entry is not None, f"{artifacts / MANIFEST} has no ONNX entry for {name}"
    return RealModel(name, artifacts, artifacts / entry.path, input_name, shape)


def bare_rows_per_s(model: RealModel, batch: int, seconds: float = 1.0) -> float:
    """Rows per second of `model`'s ONNX file in a bare onnxruntime session at `batch` rows per call
    (one intra-op thread; after a warm-up)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(model.onnx), options, providers=["CPUExecutionProvider"])
    feed = {model.input: model.rows(batch)}
    for _ in range(3):
        session.run(None, feed)
    calls, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        session.run(None, feed)
        calls += 1
    return calls * batch / elapsed
