"""`--standardize`: train on standardized features, then fold mean and scale into the weights.

A model trained on z = (x - mean) / scale computes y = z @ w_z + b_z. Substituting z gives
y = x @ (w_z / scale) + (b_z - sum(w_z * mean / scale)): the same function of raw x with
folded weights. The saved models (and so every export) carry the folded weights and take raw x.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from train.data import Dataset


@dataclass(frozen=True)
class Standardizer:
    """Per-feature mean and scale (population standard deviation), float64."""

    mean: np.ndarray  # (n,)
    scale: np.ndarray  # (n,), > 0: constant features are rejected when the data is loaded

    @classmethod
    def fit(cls, data: Dataset) -> Standardizer:
        x = data.x.astype(np.float64)
        return cls(mean=x.mean(axis=0), scale=x.std(axis=0))

    def transform(self, data: Dataset) -> Dataset:
        """The same data with standardized features (float32), as the trainers see it."""
        z = ((data.x.astype(np.float64) - self.mean) / self.scale).astype(np.float32)
        return replace(data, x=np.ascontiguousarray(z))

    def fold(self, weights: np.ndarray, bias: float) -> tuple[np.ndarray, float]:
        """Weights and bias on standardized features -> the same model on raw features (float64)."""
        w = np.asarray(weights, dtype=np.float64).reshape(-1) / self.scale
        return w, float(bias) - float(np.sum(w * self.mean))

    def to_json(self) -> dict:
        return {
            "mean": self.mean.tolist(),
            "scale": self.scale.tolist(),
            "note": "trained on (x - mean) / scale; folded into the saved weights, which take raw x",
        }
