"""Train the article's Keras model: `python -m train.keras [--seed 0] [--artifacts DIR] [--data CSV]`.

`Sequential([Dense(1)])` on n inputs, SGD(lr 0.01), mean squared error, 500 full-batch
epochs, as in the article (`--loss`, `--standardize` change that; see train/all.py). The
500 updates run in one compiled `tf.function` loop over `Model.train_step`, the same step
`model.fit` runs, on the same (shuffled) batch fit feeds it, so the weights are bitwise
those of `fit(xs, ys, epochs=500)` (tests/test_train_keras.py proves it) without fit's
~20 ms per-epoch Python overhead.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

import numpy as np

from oneneuron.architecture import LINEAR, Architecture, Fitted
from oneneuron.frameworks import quiet_tensorflow
from train import mlp
from train.config import TrainConfig
from train.data import Dataset, headline_input
from train.result import FitResult, check_losses, log_progress
from train.standardize import Standardizer

if TYPE_CHECKING:  # imported where used: `--help` never loads TensorFlow (oneneuron/frameworks.py)
    import keras
    import tensorflow as tf

MODEL = "keras_linear"
MODEL_FILE = f"{MODEL}.keras"


LOSS_NAMES = {
    "mean": "mean_squared_error (mean over the batch)",
    "sum": "squared error summed over the batch (MeanSquaredError(reduction='sum'))",
}


def build_model(
    n_features: int, lr: float, loss: str = "mean", architecture: Architecture = LINEAR
) -> keras.Model:
    """The article's model: one Dense unit (or an MLP, train/mlp.py), compiled with SGD and squared
    error (`loss`: mean or sum)."""
    quiet_tensorflow()
    import keras

    layers = (
        [keras.Input(shape=(n_features,), name="x"), keras.layers.Dense(1)]
        if architecture.is_linear
        else mlp.keras_layers(n_features, architecture)
    )
    model = keras.Sequential(layers)
    # "mean" is the article's string loss, kept as is so the default run stays bitwise the same.
    compiled = "mean_squared_error" if loss == "mean" else keras.losses.MeanSquaredError(reduction="sum")
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=lr), loss=compiled)
    return model


def fit_batch(x: np.ndarray, y: np.ndarray) -> tuple[tf.Tensor, tf.Tensor]:
    """The full batch exactly as `model.fit(x, y)` feeds it to `train_step`.

    fit shuffles the rows (shuffle=True by default) with a `tf.random.shuffle` inside its
    tf.data pipeline; the permutation comes from the global seed and repeats every epoch,
    and row order changes the float32 sums in the gradient. Taking the batch from Keras's
    own array adapter (private API, Keras 3.15 pinned) gives the same order, hence bitwise
    the same updates.
    """
    quiet_tensorflow()
    from keras.src.trainers.data_adapters.array_data_adapter import ArrayDataAdapter

    adapter = ArrayDataAdapter(x, y, batch_size=len(x), shuffle=True)
    bx, by = next(iter(adapter.get_tf_dataset()))
    return bx, by


def fit_compiled(
    model: keras.Model,
    x: np.ndarray,
    y: np.ndarray,
    steps: int,
    config: TrainConfig | None = None,
    losses: list[float] | None = None,
) -> list[float]:
    """Run `steps` full-batch updates in compiled chunks; returns the per-update loss.

    Each update is `model.train_step(batch)`, exactly what one epoch of `model.fit` does on
    a batch that holds the whole data set; chunking only decides how often we report.
    """
    tf = quiet_tensorflow()
    config = config or TrainConfig()
    losses = [] if losses is None else losses
    xt, yt = fit_batch(x, y)

    @tf.function
    def run(n: tf.Tensor) -> tf.Tensor:
        out = tf.TensorArray(tf.float32, size=n)
        for i in tf.range(n):
            for metric in model.metrics:  # report this update's loss, not a running mean
                metric.reset_state()
            out = out.write(i, tf.cast(model.train_step((xt, yt))["loss"], tf.float32))
        return out.stack()

    chunk = max(1, config.progress_every)
    done = 0
    while done < steps:
        n = min(chunk, steps - done)
        losses.extend(float(v) for v in run(tf.constant(n)).numpy())
        done += n
        check_losses("keras", losses, config.lr, config.standardize)
        log_progress("keras", done, steps, losses[-1])
    return losses


def train(data: Dataset, config: TrainConfig) -> tuple[keras.Model, FitResult]:
    """Seed, build and train the Keras model on `data` (standardized first with `config.standardize`)."""
    tf = quiet_tensorflow()
    import keras

    keras.utils.set_random_seed(config.seed)
    start = time.perf_counter()
    loss = config.loss_for("keras")
    arch = config.architecture
    model = build_model(data.n_features, config.lr, loss, arch)
    scaler = Standardizer.fit(data) if config.standardize else None
    fit_data = scaler.transform(data) if scaler else data
    losses = fit_compiled(model, fit_data.x, fit_data.y, config.epochs, config)
    if scaler and arch.is_linear:  # fold mean/scale into the layer: the saved model takes raw x
        kernel, bias = (v.numpy() for v in model.weights)
        w, b = scaler.fold(kernel[:, 0], float(bias[0]))
        model.layers[-1].set_weights([w.reshape(-1, 1).astype(np.float32), np.asarray([b], np.float32)])
    elif scaler:  # an MLP: fold them into its first layer
        first = model.layers[0]
        first.set_weights(list(mlp.fold_first_layer(*(v.numpy() for v in first.weights), scaler)))
    headline = headline_input(data.n_features)
    prediction = float(model(headline, training=False).numpy()[0, 0])
    weights = bias = fitted = None
    if arch.is_linear:
        kernel, b = (v.numpy() for v in model.weights)
        weights, bias = [float(w) for w in kernel[:, 0]], float(b[0])
    else:
        points = mlp.fitted_points(data, headline)
        fitted = Fitted(
            tuple(tuple(float(v) for v in row) for row in points),
            tuple(float(v) for v in predict(model, points)[:, 0]),
        )
    name = mlp.model_name("keras", arch)
    result = FitResult(
        model=name,
        framework="tensorflow",
        versions={"tensorflow": tf.__version__, "keras": keras.__version__},
        model_file=f"{name}.keras",
        loss_name=LOSS_NAMES[loss],
        weights=weights,
        bias=bias,
        losses=losses,
        headline_y=prediction,
        seconds=time.perf_counter() - start,
        standardization=scaler.to_json() if scaler else None,
        architecture=arch,
        parameters=int(model.count_params()),
        fitted=fitted,
    )
    return model, result


def save(model: keras.Model, path: os.PathLike) -> None:
    """Save the trained model as a `.keras` archive (called with a temporary path)."""
    model.save(path)


def load(path: os.PathLike, n_features: int, architecture: Architecture = LINEAR) -> keras.Model:
    """Load a `.keras` archive written by `save` (safe mode: no lambda deserialisation); it must
    have the record's input width and architecture."""
    quiet_tensorflow()
    import keras

    model = keras.models.load_model(path, compile=False, safe_mode=True)
    if model.input_shape[-1] != n_features:
        raise ValueError(f"{path}: model takes {model.input_shape[-1]} features, record says {n_features}")
    expected = build_model(n_features, 0.01, architecture=architecture)
    if [w.shape for w in model.weights] != [w.shape for w in expected.weights]:
        raise ValueError(
            f"{path}: layer shapes {[tuple(w.shape) for w in model.weights]} are not the record's "
            f"architecture {architecture.describe()}"
        )
    return model


def layers(model: keras.Model) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each Dense layer's (kernel (in, out), bias), for `train.mlp.magnitude`."""
    return [(layer.kernel.numpy(), layer.bias.numpy()) for layer in model.layers if hasattr(layer, "kernel")]


def predict(model: keras.Model, x: np.ndarray) -> np.ndarray:
    """The model's output for a float32 batch (rows, n), in Keras."""
    return np.asarray(model(x, training=False))


if __name__ == "__main__":
    from train.cli import main

    main(frameworks=("keras",))
