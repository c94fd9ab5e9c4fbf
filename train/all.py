"""Train both models: `python -m train.all [--data CSV [--target y] [--features a,b]] [--seed 0]`.

Without `--data`, the article's six points. Writes `keras_linear.keras`, `torch_linear.pt`
(a state_dict) and `training.json` (config, seed, data identity, loss histories, final
parameters, library versions) to the artifacts directory, and prints the article's
comparison: final loss, w, b and y(10) per framework. A CSV is validated completely before
any training, and nothing is written unless every framework trained without diverging.
The flags and the table: train/cli.py; the record: train/record.py; the child process that
trains one framework while this one trains the other: train/parallel.py.
"""

from __future__ import annotations

import importlib
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from oneneuron import cli
from oneneuron.fsio import Root
from oneneuron.schema import TRAINING_RECORD
from train.cli import FRAMEWORKS, main
from train.config import TrainConfig
from train.data import Dataset, article_data, load_csv, reference_block
from train.parallel import ChildTrainer
from train.record import build_record
from train.result import FitResult
from train.split import split_data

__all__ = ["load_data", "main", "train_all"]


def load_data(config: TrainConfig) -> Dataset:
    """The article's data, or the validated CSV `config.data` (raises InputError naming file, row, column)
    with its test rows chosen (`config.test_fraction`, seeded by `config.seed`; train/split.py)."""
    if config.data is None:
        return split_data(article_data(), config.test_fraction, config.seed)
    return split_data(
        load_csv(config.data, config.target, config.features), config.test_fraction, config.seed
    )


def train_all(
    config: TrainConfig, data: Dataset, frameworks=FRAMEWORKS, parallel: bool = False
) -> list[FitResult]:
    """Train each framework, then save every model and merge the results into the training record.

    With `parallel` (the CLI's default) and both frameworks, torch trains in a child process
    while this one imports TensorFlow and trains Keras: the two imports (~2 s and ~1 s) and
    trainings overlap on the two cores, the biggest item of `python -m train.all`'s wall time
    (bench row 1). Each framework is seeded the same way either way, so the parameters are
    identical. Only the train rows of `data` are trained on (`Dataset.train_part`). Nothing is
    written until all frameworks trained: a bad --probe, a divergence or
    a run killed while training leaves the artifacts directory as it was.
    """
    reference_block(data, config.probe)  # validates --probe against the data's width
    fit_data = data.train_part()  # the test rows (if any) are never trained on
    saves: list[tuple[FitResult, Callable[[Path], None]]] = []
    with tempfile.TemporaryDirectory(prefix="train-") as scratch:
        side = None
        if parallel and len(frameworks) > 1:  # the last framework trains in a child process
            staged = Path(scratch) / "child_model"
            side = ChildTrainer(frameworks[-1], fit_data, config, staged)
        for name in frameworks:
            if side is not None and name == side.framework:
                continue
            trainer = importlib.import_module(f"train.{name}")
            model, result = trainer.train(fit_data, config)
            saves.append((result, lambda p, trainer=trainer, model=model: trainer.save(model, p)))
        if side is not None:
            result = side.result()  # re-raises the child's DivergenceError etc.
            saves.append((result, lambda p: shutil.copyfile(staged, p)))
        root = Root(cli.ensure_dir(Path(config.artifacts), create=True))
        # The writes close together under the directory lock, the record last.
        with root.locked(), root.transaction() as txn:  # models and record land together
            for result, save in saves:
                txn.stage(result.model_file, save)
            record = build_record(root, txn, config, data, [result for result, _ in saves])
            txn.write_json(TRAINING_RECORD, record.to_json())
    return [result for result, _ in saves]


if __name__ == "__main__":
    main(FRAMEWORKS)
