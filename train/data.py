"""The article's data, the analytic reference and the probe batch every check uses."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

# The article's six points (y = 2x - 1), float32 as both frameworks train on them.
ARTICLE_X = [-1.0, 0.0, 1.0, 2.0, 3.0, 4.0]
ARTICLE_Y = [-3.0, -1.0, 1.0, 3.0, 5.0, 7.0]
HEADLINE_X = 10.0  # the article predicts at x = 10
PROBE_EXTRA = (0.0, HEADLINE_X, -1000.0, 1000.0)  # points beyond the data's range
MAX_PROBE_ROWS = 64  # data rows carried into the probe batch


@dataclass(frozen=True)
class Dataset:
    """Features `x` (rows, n) and target `y` (rows, 1), both float32."""

    x: np.ndarray
    y: np.ndarray
    features: tuple[str, ...]
    target: str
    source: str  # "article" or the CSV path

    @property
    def n_features(self) -> int:
        return self.x.shape[1]

    @property
    def sha256(self) -> str:
        """sha256 of the float32 little-endian bytes of x (row-major) followed by y."""
        h = hashlib.sha256()
        h.update(np.ascontiguousarray(self.x, dtype="<f4").tobytes())
        h.update(np.ascontiguousarray(self.y, dtype="<f4").tobytes())
        return h.hexdigest()

    def describe(self) -> dict:
        """The data's identity as recorded in the training record and the manifest."""
        return {
            "source": self.source,
            "sha256": self.sha256,
            "rows": int(self.x.shape[0]),
            "n_features": self.n_features,
            "features": list(self.features),
            "target": self.target,
        }


def article_data() -> Dataset:
    """The documented data: x = [-1, 0, 1, 2, 3, 4], y = [-3, -1, 1, 3, 5, 7]."""
    x = np.asarray(ARTICLE_X, dtype=np.float32).reshape(-1, 1)
    y = np.asarray(ARTICLE_Y, dtype=np.float32).reshape(-1, 1)
    return Dataset(x=x, y=y, features=("x",), target="y", source="article")


def least_squares(data: Dataset) -> tuple[np.ndarray, float]:
    """Ordinary least squares on the data (float64): weights (n,) and bias."""
    design = np.hstack([data.x.astype(np.float64), np.ones((len(data.x), 1))])
    coef, *_ = np.linalg.lstsq(design, data.y[:, 0].astype(np.float64), rcond=None)
    return coef[:-1], float(coef[-1])


def headline_input(n_features: int) -> np.ndarray:
    """The article's question, x = 10, as a (1, n) float32 batch (every feature 10)."""
    return np.full((1, n_features), HEADLINE_X, dtype=np.float32)


def probe_batch(data: Dataset) -> np.ndarray:
    """Rows the check compares on: the data's rows, then 0, 10, -1000 and 1000 in every feature."""
    rows = data.x[:MAX_PROBE_ROWS]
    extra = np.repeat(np.asarray(PROBE_EXTRA, dtype=np.float32)[:, None], data.n_features, axis=1)
    return np.vstack([rows, extra]).astype(np.float32)


def reference_block(data: Dataset) -> dict:
    """The analytic reference (least squares) and the probe batch, as stored in the record."""
    weights, bias = least_squares(data)
    probe = probe_batch(data).astype(np.float64)
    headline = headline_input(data.n_features).astype(np.float64)
    return {
        "reference": {"method": "least squares (numpy.linalg.lstsq, float64)",
                      "weights": weights.tolist(), "bias": bias},
        "probe": {
            "x": probe.tolist(),
            "reference_y": (probe @ weights + bias).tolist(),
            "headline_x": headline[0].tolist(),
            "headline_reference_y": float((headline @ weights + bias)[0]),
        },
    }
