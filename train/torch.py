"""Train the article's PyTorch model: `python -m train.torch [--seed 0] [--artifacts DIR] [--data CSV]`.

`nn.Linear(n, 1)`, SGD(lr 0.01), `MSELoss(reduction="sum")` (the article's
`size_average=False`), 500 full-batch steps, as in the article (`--loss`, `--standardize`
change that; see train/all.py).
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

import numpy

from oneneuron.architecture import LINEAR, Architecture, Fitted
from train import mlp
from train.config import TrainConfig
from train.data import Dataset, headline_input
from train.result import FitResult, check_losses, log_progress
from train.standardize import Standardizer

if TYPE_CHECKING:  # imported where used: `--help` never loads torch
    from torch import nn

MODEL = "torch_linear"
MODEL_FILE = f"{MODEL}.pt"


def build_model(n_features: int, architecture: Architecture = LINEAR) -> nn.Module:
    """The article's model: one linear unit (or an MLP, train/mlp.py)."""
    from torch import nn

    return nn.Linear(n_features, 1) if architecture.is_linear else mlp.torch_module(n_features, architecture)


LOSS_NAMES = {
    "sum": "squared error summed over the batch (MSELoss(reduction='sum'))",
    "mean": "mean squared error over the batch (MSELoss(reduction='mean'))",
}


def train(data: Dataset, config: TrainConfig) -> tuple[nn.Module, FitResult]:
    """Seed, build and train the torch model on `data` with the article's Python loop.

    An MLP trains on one intra-op thread: its small per-layer kernels gain nothing from a second
    one, and on a busy machine torch's thread pool made 300 updates take 6-10 s instead of 0.2-0.3 s
    (measured on the 2-core machine at load ~12). The linear model is left exactly as it was.
    """
    import torch

    if config.architecture.is_linear:
        return _train(data, config)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _train(data, config)
    finally:
        torch.set_num_threads(threads)


def _train(data: Dataset, config: TrainConfig) -> tuple[nn.Module, FitResult]:
    import torch
    from torch import nn

    torch.manual_seed(config.seed)
    start = time.perf_counter()
    arch = config.architecture
    model = build_model(data.n_features, arch)
    loss_name = config.loss_for("torch")
    criterion = nn.MSELoss(reduction=loss_name)
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr)
    scaler = Standardizer.fit(data) if config.standardize else None
    fit_data = scaler.transform(data) if scaler else data
    x, y = torch.from_numpy(fit_data.x), torch.from_numpy(fit_data.y)
    losses: list[float] = []
    for step in range(1, config.epochs + 1):
        loss = criterion(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        if step % config.progress_every == 0 or step == config.epochs:
            check_losses("torch", losses, config.lr, config.standardize)
            log_progress("torch", step, config.epochs, losses[-1])
    with torch.no_grad():
        if scaler and arch.is_linear:  # fold mean/scale into the layer: the saved model takes raw x
            w, b = scaler.fold(model.weight[0].numpy(), float(model.bias[0]))
            model.weight.copy_(torch.from_numpy(w.astype(numpy.float32)).reshape(1, -1))
            model.bias.fill_(b)
        elif scaler:  # an MLP: fold them into its first layer
            first = model[0]
            k, c = mlp.fold_first_layer(first.weight.numpy().T, first.bias.numpy(), scaler)
            first.weight.copy_(torch.from_numpy(numpy.ascontiguousarray(k.T)))
            first.bias.copy_(torch.from_numpy(c))
        headline = headline_input(data.n_features)
        prediction = float(model(torch.from_numpy(headline))[0, 0])
    weights = bias = fitted = None
    if arch.is_linear:
        weights, bias = [float(w) for w in model.weight.detach()[0]], float(model.bias.detach()[0])
    else:
        points = mlp.fitted_points(data, headline)
        fitted = Fitted(
            tuple(tuple(float(v) for v in row) for row in points),
            tuple(float(v) for v in predict(model, points)[:, 0]),
        )
    name = mlp.model_name("torch", arch)
    result = FitResult(
        model=name,
        framework="torch",
        versions={"torch": torch.__version__},
        model_file=f"{name}.pt",
        loss_name=LOSS_NAMES[loss_name],
        weights=weights,
        bias=bias,
        losses=losses,
        headline_y=prediction,
        seconds=time.perf_counter() - start,
        standardization=scaler.to_json() if scaler else None,
        architecture=arch,
        parameters=sum(p.numel() for p in model.parameters()),
        fitted=fitted,
    )
    return model, result


def save(model: nn.Module, path: os.PathLike) -> None:
    """Save the state_dict only (tensors, no pickled code)."""
    import torch

    torch.save(model.state_dict(), path)


def load(path: os.PathLike, n_features: int, architecture: Architecture = LINEAR) -> nn.Module:
    """Rebuild the record's architecture and load the weights written by `save` into it;
    `weights_only=True` refuses pickled objects."""
    import torch

    model = build_model(n_features, architecture)
    model.load_state_dict(torch.load(path, weights_only=True, map_location="cpu"))
    return model.eval()


def layers(model: nn.Module) -> list[tuple[numpy.ndarray, numpy.ndarray]]:
    """Each Linear layer's (weight transposed to (in, out), bias), for `train.mlp.magnitude`."""
    from torch import nn

    return [
        (m.weight.detach().numpy().T, m.bias.detach().numpy())
        for m in model.modules()
        if isinstance(m, nn.Linear)
    ]


def predict(model: nn.Module, x: numpy.ndarray) -> numpy.ndarray:
    """The model's output for a float32 batch (rows, n), in torch."""
    import torch

    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


if __name__ == "__main__":
    from train.cli import main

    main(frameworks=("torch",))
