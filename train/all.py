"""Train both models on the article's data: `python -m train.all [--seed 0] [--artifacts DIR]`.

Writes `keras_linear.keras`, `torch_linear.pt` (a state_dict) and `training.json` (config,
seed, data sha256, loss histories, final parameters, library versions) to the artifacts
directory, and prints the article's comparison: final loss, w, b and y(10) per framework.
"""

from __future__ import annotations

import datetime as dt
import importlib
import logging
import platform
from pathlib import Path

import numpy as np

from core import cli
from core.fsio import atomic_write_json, atomic_write_with, locked, sha256_file
from core.manifest import TRAINING_RECORD, read_json
from train.config import TrainConfig
from train.data import Dataset, article_data, reference_block
from train.result import FitResult

logger = logging.getLogger(__name__)

FRAMEWORKS = ("keras", "torch")  # module names under train/


def train_all(config: TrainConfig, data: Dataset, frameworks=FRAMEWORKS) -> list[FitResult]:
    """Train each framework, save its model and merge its result into the training record."""
    artifacts = cli.ensure_dir(Path(config.artifacts), create=True)
    trained = []
    for name in frameworks:
        trainer = importlib.import_module(f"train.{name}")
        trained.append((trainer, *trainer.train(data, config)))
    # All training first, then the writes close together under the lock, record last: a run
    # killed while training leaves the previous models and record untouched.
    with locked(artifacts):
        for trainer, model, result in trained:
            atomic_write_with(artifacts / result.model_file, lambda p: trainer.save(model, p))
        write_record(artifacts, config, data, [result for _, _, result in trained])
    return [result for _, _, result in trained]


def write_record(artifacts: Path, config: TrainConfig, data: Dataset, results: list[FitResult]) -> Path:
    """Write `training.json`, keeping another framework's earlier run on the same data."""
    path = artifacts / TRAINING_RECORD
    models = {}
    if path.is_file():
        try:
            old = read_json(path, "python -m train.all")
            if old.get("data", {}).get("sha256") == data.sha256:
                models = {k: v for k, v in old.get("models", {}).items() if (artifacts / v["model_file"]).is_file()}
        except Exception:  # an unreadable old record is replaced, not fatal
            models = {}
    for r in results:
        entry = r.to_json()
        entry["config"] = config.to_json()
        entry["model_sha256"] = sha256_file(artifacts / r.model_file)
        models[r.model] = entry
    record = {
        "schema_version": 1,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "config": config.to_json(),
        "data": data.describe(),
        **reference_block(data),
        "models": dict(sorted(models.items())),
        "library_versions": {"python": platform.python_version(), "numpy": np.__version__,
                             **{k: v for r in results for k, v in r.versions.items()}},
    }
    atomic_write_json(path, record)
    return path


def comparison_table(results: list[FitResult], record: dict) -> str:
    """The article's comparison, side by side, with the least-squares reference."""
    ref = record["reference"]
    target = record["probe"]["headline_reference_y"]
    x10 = ", ".join(f"{v:g}" for v in record["probe"]["headline_x"])
    cols = [f"{r.model} ({r.framework})" for r in results] + ["least squares"]
    rows = [("final loss", [f"{r.final_loss:.6g}" for r in results] + [""])]
    for i, w in enumerate(ref["weights"]):
        rows.append((f"w[{i}]" if len(ref["weights"]) > 1 else "w", [f"{r.weights[i]:.6f}" for r in results] + [f"{w:.6f}"]))
    rows.append(("b", [f"{r.bias:.6f}" for r in results] + [f"{ref['bias']:.6f}"]))
    rows.append((f"y(x={x10})", [f"{r.prediction_headline:.6f}" for r in results] + [f"{target:.6f}"]))
    rows.append((f"|y - {target:g}|", [f"{abs(r.prediction_headline - target):.6f}" for r in results] + [""]))
    rows.append(("train time (s)", [f"{r.seconds:.3f}" for r in results] + [""]))
    width = max(len(c) for c in cols) + 2
    lines = [" " * 16 + "".join(c.rjust(width) for c in cols)]
    lines += [label.ljust(16) + "".join(v.rjust(width) for v in values) for label, values in rows]
    return "\n".join(lines)


def run(args) -> int:
    """Train from parsed CLI arguments and print the comparison table."""
    config = TrainConfig(artifacts=args.artifacts, seed=args.seed, epochs=args.epochs, lr=args.lr)
    logger.info("config: %s", config.to_json())
    data = article_data()
    results = train_all(config, data, args.frameworks)
    record = read_json(Path(config.artifacts) / TRAINING_RECORD, "python -m train.all")
    print(comparison_table(results, record))
    files = [str(Path(config.artifacts) / r.model_file) for r in results]
    print(f"wrote {', '.join(files)}, {Path(config.artifacts) / TRAINING_RECORD}")
    return 0


def build_parser(frameworks=FRAMEWORKS):
    """The training CLI's parser (also used by `python -m pipeline`)."""
    names = " and ".join(frameworks)
    p = cli.parser(f"Train the article's one-neuron linear regression in {names}.",
                   f"python -m {'train.all' if len(frameworks) > 1 else 'train.' + frameworks[0]} --seed 0")
    cli.artifacts_arg(p)
    defaults = TrainConfig()
    p.add_argument("--seed", type=int, default=defaults.seed, help="seed for weight initialisation")
    p.add_argument("--epochs", type=cli.positive_int, default=defaults.epochs, help="full-batch SGD updates")
    p.add_argument("--lr", type=cli.positive_float, default=defaults.lr, help="SGD learning rate")
    p.set_defaults(frameworks=frameworks)
    return p


def main(frameworks=FRAMEWORKS) -> None:
    cli.run(run, build_parser(frameworks).parse_args())

if __name__ == "__main__":
    main()
