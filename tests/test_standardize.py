"""--standardize (fold mean/scale into the weights), --loss, and the divergence advice."""

import numpy as np
import pytest

from oneneuron.errors import DivergenceError
from train import keras as keras_trainer
from train import torch as torch_trainer
from train.config import TrainConfig
from train.data import Dataset, article_data
from train.standardize import Standardizer


def scaled_data() -> Dataset:
    """Two features on very different scales: y = 0.003 a + 2 b - 1, exactly."""
    rng = np.random.default_rng(0)
    x = np.column_stack([rng.uniform(0, 1000, 20), rng.uniform(-1, 1, 20)]).astype(np.float32)
    y = (x.astype(np.float64) @ [0.003, 2.0] - 1).astype(np.float32).reshape(-1, 1)
    return Dataset(x=x, y=y, features=("a", "b"), target="y", source="test")


def test_fold_gives_the_same_function_of_raw_x():
    data = scaled_data()
    scaler = Standardizer.fit(data)
    z = scaler.transform(data).x.astype(np.float64)
    np.testing.assert_allclose(z.mean(0), 0, atol=1e-6)
    np.testing.assert_allclose(z.std(0), 1, atol=1e-6)
    w_z, b_z = np.array([0.7, -1.3]), 0.25
    w, b = scaler.fold(w_z, b_z)
    np.testing.assert_allclose(data.x @ w + b, z @ w_z + b_z, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("trainer", [keras_trainer, torch_trainer], ids=["keras", "torch"])
def test_standardize_trains_where_raw_features_diverge(trainer):
    data = scaled_data()
    with pytest.raises(DivergenceError, match="smaller learning rate.*--standardize"):
        trainer.train(data, TrainConfig(epochs=100, lr=0.01, loss="mean"))
    model, result = trainer.train(data, TrainConfig(epochs=1000, lr=0.1, loss="mean", standardize=True))
    # the saved model takes raw x: its own prediction equals the folded weights' line
    raw = trainer.predict(model, data.x)[:, 0]
    np.testing.assert_allclose(raw, data.x @ np.asarray(result.weights) + result.bias, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(result.weights, [0.003, 2.0], rtol=1e-3)
    assert abs(result.bias + 1) < 1e-3
    assert result.standardization["scale"][0] > 100


def test_divergence_with_standardize_suggests_only_the_learning_rate():
    with pytest.raises(DivergenceError) as info:
        torch_trainer.train(scaled_data(), TrainConfig(epochs=100, lr=5.0, standardize=True))
    assert "smaller learning rate" in str(info.value) and "--standardize" not in str(info.value)


@pytest.mark.parametrize(
    "trainer, article", [(keras_trainer, "mean"), (torch_trainer, "sum")], ids=["keras", "torch"]
)
def test_loss_flag_switches_mean_and_sum(trainer, article):
    data = article_data()  # six rows: the summed loss is 6x the mean at the same weights
    other = "sum" if article == "mean" else "mean"
    _, default = trainer.train(data, TrainConfig(epochs=1))
    _, same = trainer.train(data, TrainConfig(epochs=1, loss=article))
    _, switched = trainer.train(data, TrainConfig(epochs=1, loss=other))
    assert default.losses == same.losses and default.loss_name == same.loss_name
    ratio = switched.losses[0] / default.losses[0]
    assert ratio == pytest.approx(6.0 if other == "sum" else 1 / 6, rel=1e-5)
    assert other in switched.loss_name
