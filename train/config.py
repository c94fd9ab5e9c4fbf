"""`TrainConfig`: one frozen record of how a training run was set up."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from oneneuron.architecture import ACTIVATIONS, LINEAR, Architecture

# --loss names. "article" keeps each framework's loss from the article.
LOSSES = ("article", "mean", "sum")
ARTICLE_LOSS = {
    "keras": "mean",
    "torch": "sum",
}  # Keras: mean_squared_error; torch: MSELoss(size_average=False)


@dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters and paths; defaults are the article's setup."""

    artifacts: Path = Path("artifacts")  # where models and the training record go
    seed: int = 0  # seeds weight initialisation in both frameworks
    epochs: int = 500  # full-batch SGD updates (the article: 500)
    lr: float = 0.01  # SGD learning rate (the article: 0.01 in both)
    progress_every: int = 100  # log the loss every this many updates
    data: Path | None = None  # CSV to train on; None = the article's six points
    target: str = "y"  # the CSV's target column
    features: tuple[str, ...] | None = None  # the CSV's feature columns; None = every other column
    loss: str = "article"  # "article" (Keras mean, torch sum), or "mean" / "sum" squared error for both
    standardize: bool = False  # train on standardized features; mean/scale folded into the saved weights
    probe: tuple[tuple[float, ...], ...] = ()  # extra probe points (--probe), see train.data.probe_rows
    test_fraction: float | None = (
        None  # rows held out (train/split.py); None: 0.2 for a CSV, 0 for the article
    )
    model: str = "linear"  # "linear" (the article) or "mlp:H1,H2,..." (hidden layer sizes), see train/mlp.py
    activation: str | None = None  # after each hidden layer of an MLP: relu (default) or tanh

    @property
    def architecture(self) -> Architecture:
        """The model both frameworks build (`model` is validated by the CLI: train.mlp.parse_model)."""
        if self.model == "linear":
            return LINEAR
        hidden = tuple(int(h) for h in self.model.removeprefix("mlp:").split(","))
        activation = self.activation or ACTIVATIONS[0]
        return Architecture(hidden, activation)

    def loss_for(self, framework: str) -> str:
        """The reduction ("mean" or "sum") `framework` ("keras"/"torch") trains with.

        "article" is the article's per-framework choice for its linear model; an MLP is not the
        article's model, and with "article" both frameworks use the mean (a summed loss scales
        every step by the number of rows, which diverges at --lr 0.01 on a few hundred rows).
        """
        if self.loss != "article":
            return self.loss
        return ARTICLE_LOSS[framework] if self.model == "linear" else "mean"

    def to_json(self) -> dict:
        d = asdict(self)
        d["artifacts"] = str(self.artifacts)
        d["data"] = None if self.data is None else str(self.data)
        d["features"] = None if self.features is None else list(self.features)
        d["probe"] = [list(p) for p in self.probe]
        return d
