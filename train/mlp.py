"""More than one neuron: `python -m train.all --model mlp:16,16 --activation tanh`.

The same architecture in both frameworks: `hidden` Dense / Linear layers, each followed by the
activation, then one linear output unit (Keras `Sequential`, torch `nn.Sequential`). Each
framework initialises with its own defaults (Keras: Glorot uniform kernels, zero biases; torch:
Kaiming uniform), seeded by `--seed` as for the linear model. `--standardize` folds mean and
scale into the first layer, so the saved models take raw x, as the linear models do.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

import numpy as np

from oneneuron.architecture import MAX_HIDDEN_LAYERS, MAX_HIDDEN_UNITS, Architecture
from train.data import Dataset
from train.standardize import Standardizer

if TYPE_CHECKING:  # imported where used: `--help` never loads TensorFlow or torch
    from torch import nn

# Rows of the data (several features) or points of the grid (one feature) whose predictions the
# record keeps for the report's figure.
FITTED_ROWS = 1000
GRID_POINTS = 200


def parse_model(text: str) -> str:
    """`--model linear` or `--model mlp:16,8` -> the normalised text (argparse type)."""
    if text == "linear":
        return text
    sizes = text.removeprefix("mlp:").split(",") if text.startswith("mlp:") else None
    example = "give linear, or mlp:H1,H2,... with hidden layer sizes, e.g. mlp:16,16"
    if not sizes or not all(s.strip().isdigit() for s in sizes):
        raise argparse.ArgumentTypeError(f"{text!r} is not a model; {example}")
    hidden = [int(s) for s in sizes]
    if len(hidden) > MAX_HIDDEN_LAYERS or not all(1 <= h <= MAX_HIDDEN_UNITS for h in hidden):
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected 1 to {MAX_HIDDEN_LAYERS} hidden layers of 1 to {MAX_HIDDEN_UNITS} "
            f"units; {example}"
        )
    return "mlp:" + ",".join(str(h) for h in hidden)


def model_name(framework: str, architecture: Architecture) -> str:
    """`keras_linear` / `torch_linear` for the article's model, `keras_mlp` / `torch_mlp` for an MLP."""
    return f"{framework}_{'linear' if architecture.is_linear else 'mlp'}"


def keras_layers(n_features: int, architecture: Architecture) -> list:
    """The Keras layers of an MLP: Input `x`, hidden Dense layers with the activation, Dense(1)."""
    import keras

    hidden = [keras.layers.Dense(h, activation=architecture.activation) for h in architecture.hidden]
    return [keras.Input(shape=(n_features,), name="x"), *hidden, keras.layers.Dense(1)]


def torch_module(n_features: int, architecture: Architecture) -> nn.Sequential:
    """The same MLP in torch: Linear, activation, ..., Linear(., 1)."""
    from torch import nn

    act = {"relu": nn.ReLU, "tanh": nn.Tanh}[architecture.activation]
    layers: list[nn.Module] = []
    width = n_features
    for h in architecture.hidden:
        layers += [nn.Linear(width, h), act()]
        width = h
    layers.append(nn.Linear(width, 1))
    return nn.Sequential(*layers)


def fold_first_layer(kernel: np.ndarray, bias: np.ndarray, scaler: Standardizer) -> tuple[np.ndarray, ...]:
    """A first layer trained on z = (x - mean) / scale, as the same layer on raw x.

    `kernel` is (n_features, units) (Keras's layout; transpose torch's). z @ K + c =
    x @ (K / scale[:, None]) + (c - mean @ (K / scale[:, None])).
    """
    k = np.asarray(kernel, dtype=np.float64) / scaler.scale[:, None]
    c = np.asarray(bias, dtype=np.float64) - scaler.mean @ k
    return k.astype(np.float32), c.astype(np.float32)


def fitted_points(data: Dataset, headline: np.ndarray) -> np.ndarray:
    """Where the record keeps an MLP's predictions: one feature, a grid over the data and the
    headline point; several, the first `FITTED_ROWS` data rows (the report plots them against y)."""
    if data.n_features > 1:
        return np.ascontiguousarray(data.x[:FITTED_ROWS], dtype=np.float32)
    x = data.x[:, 0].astype(np.float64)
    lo, hi = min(x.min(), float(headline[0, 0])), max(x.max(), float(headline[0, 0]))
    pad = 0.05 * (hi - lo)
    return np.linspace(lo - pad, hi + pad, GRID_POINTS, dtype=np.float32)[:, None]


def magnitude(layers: list[tuple[np.ndarray, np.ndarray]], x: np.ndarray) -> np.ndarray:
    """Per row of `x`, the size of the sums a runtime adds up in an MLP: the same network with
    |weights| and |biases| applied to |x| (relu and tanh never grow a value: |f(z)| <= |z|).

    Each layer's dot products add terms no larger than this network's values, and a rounding
    error in a hidden layer reaches the output amplified by at most the |weights| after it, so
    float32 differences between runtimes scale with its output (for one linear layer it is
    Σ|x·w| + |b|, the linear models' bound). `layers`: (kernel (in, out), bias (out,)), float64.
    """
    m = np.abs(np.asarray(x, dtype=np.float64))
    for kernel, bias in layers:
        m = m @ np.abs(np.asarray(kernel, dtype=np.float64)) + np.abs(np.asarray(bias, dtype=np.float64))
    return m[:, 0]
