"""The MLP the benchmark rows for `--model mlp:...` measure (bench rows 4 and 6, "MLP").

`mlp_artifacts(dir)` writes a generated nonlinear CSV (y = sin(a) + b², 300 rows, seed 7),
trains `--model mlp:16,16 --activation relu` in both frameworks and exports ONNX into `dir`
(reused when `dir`, or the directory an earlier call in this process built, holds that export:
rows 4 and 6 of one `python -m bench` share it). Only the torch model's ONNX is timed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from oneneuron.schema import MANIFEST, Manifest

MODEL = "torch_mlp"
HIDDEN = "mlp:16,16"
N_FEATURES = 2
_built: list[Path] = []  # the directory this process trained and exported into


def write_csv(path: Path, rows: int = 300) -> None:
    rng = np.random.default_rng(7)
    x = rng.uniform(-2, 2, (rows, N_FEATURES))
    y = np.sin(x[:, 0]) + x[:, 1] ** 2
    lines = ["a,b,y"] + [f"{a:.6f},{b:.6f},{t:.6f}" for (a, b), t in zip(x, y, strict=True)]
    path.write_text("\n".join(lines) + "\n")


def _exported(artifacts: Path) -> bool:
    return (artifacts / MANIFEST).is_file() and Manifest.load(artifacts).find(MODEL, "onnx") is not None


def mlp_artifacts(artifacts: Path, quick: bool = False) -> Path:
    """Train and export the bench's MLP into `artifacts` (once per process); returns the directory.
    `quick`: 50 epochs instead of 200 (the timing does not depend on how well it fits)."""
    for earlier in [*_built, artifacts]:
        if _exported(earlier):
            return earlier
    from export.onnx import export
    from train.all import load_data, train_all
    from train.config import TrainConfig

    artifacts.mkdir(parents=True, exist_ok=True)
    csv = artifacts / "mlp_data.csv"
    write_csv(csv)
    config = TrainConfig(
        artifacts=artifacts,
        data=csv,
        model=HIDDEN,
        activation="relu",
        standardize=True,
        epochs=50 if quick else 200,
        lr=0.1,
    )
    train_all(config, load_data(config))
    export(artifacts)
    _built.append(artifacts)
    return artifacts


def example_row() -> np.ndarray:
    """One (1, 2) float32 row inside the data's range."""
    return np.array([[0.5, -1.0]], dtype=np.float32)
