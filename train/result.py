"""What one framework's training run produced, and the checks every run shares."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

from oneneuron.architecture import LINEAR, Architecture, Fitted
from oneneuron.errors import DivergenceError
from oneneuron.record import ModelRecord

logger = logging.getLogger(__name__)

# Training stops when the loss grows this many times over its first value.
DIVERGENCE_FACTOR = 1e6


@dataclass
class FitResult:
    """Learned parameters and history of one framework's run."""

    model: str  # "keras_linear" or "torch_linear" (keras_mlp, torch_mlp: train/mlp.py)
    framework: str  # "tensorflow" or "torch"
    versions: dict[str, str]
    model_file: str  # file name inside the artifacts directory
    loss_name: str
    weights: list[float] | None  # a linear model's; None for an MLP
    bias: float | None
    losses: list[float] = field(repr=False)
    headline_y: float = math.nan  # the prediction at the probe's headline point (x = 10)
    seconds: float = math.nan
    standardization: dict | None = None  # Standardizer.to_json() when trained with --standardize
    architecture: Architecture = LINEAR
    parameters: int | None = None  # weights and biases in all layers
    fitted: Fitted | None = None  # an MLP's predictions for the report (train/mlp.py fitted_points)

    @property
    def final_loss(self) -> float:
        return self.losses[-1]

    def to_record(self, config: dict, model_sha256: str) -> ModelRecord:
        """This run as the training record stores it."""
        return ModelRecord(
            model=self.model,
            framework=self.framework,
            versions=self.versions,
            model_file=self.model_file,
            model_sha256=model_sha256,
            loss=self.loss_name,
            weights=None if self.weights is None else tuple(self.weights),
            bias=self.bias,
            final_loss=self.final_loss,
            headline_y=self.headline_y,
            train_seconds=round(self.seconds, 4),
            loss_history=tuple(self.losses),
            standardization=self.standardization,
            config=config,
            architecture=self.architecture,
            parameters=self.parameters,
            fitted=self.fitted,
        )


def check_losses(framework: str, losses: list[float], lr: float, standardized: bool = False) -> None:
    """Raise `DivergenceError` when the loss is NaN/inf or has grown `DIVERGENCE_FACTOR`-fold."""
    first = losses[0] if losses else math.nan
    for i, loss in enumerate(losses):
        if not math.isfinite(loss) or (first > 0 and loss > first * DIVERGENCE_FACTOR):
            advice = (
                ""
                if standardized
                else (
                    ", or pass --standardize (features on large or unequal scales need a tiny lr without it)"
                )
            )
            raise DivergenceError(
                f"{framework}: training diverged at update {i + 1} (loss {loss:.3g}, "
                f"started at {first:.3g}); use a smaller learning rate than --lr {lr}{advice}"
            )


def log_progress(framework: str, step: int, total: int, loss: float) -> None:
    logger.info("%-10s update %4d/%d  loss %.6g", framework, step, total, loss)
