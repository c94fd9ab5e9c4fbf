"""`TrainConfig`: one frozen record of how a training run was set up."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters and paths; defaults are the article's setup."""

    artifacts: Path = Path("artifacts")  # where models and the training record go
    seed: int = 0  # seeds weight initialisation in both frameworks
    epochs: int = 500  # full-batch SGD updates (the article: 500)
    lr: float = 0.01  # SGD learning rate (the article: 0.01 in both)
    progress_every: int = 100  # log the loss every this many updates

    def to_json(self) -> dict:
        d = asdict(self)
        d["artifacts"] = str(self.artifacts)
        return d
