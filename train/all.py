"""Train both models: `python -m train.all [--data CSV [--target y] [--features a,b]] [--seed 0]`.

Without `--data`, the article's six points. Writes `keras_linear.keras`, `torch_linear.pt`
(a state_dict) and `training.json` (config, seed, data identity, loss histories, final
parameters, library versions) to the artifacts directory, and prints the article's
comparison: final loss, w, b and y(10) per framework. A CSV is validated completely before
any training, and nothing is written unless every framework trained without diverging.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib
import logging
import math
import multiprocessing
import os
import platform
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from core import cli
from core.errors import InputError
from core.fsio import atomic_write_json, atomic_write_with, locked, sha256_file, staged, transaction
from core.manifest import TRAINING_RECORD, read_json
from train.config import LOSSES, TrainConfig
from train.data import Dataset, article_data, load_csv, reference_block
from train.result import FitResult

logger = logging.getLogger(__name__)

FRAMEWORKS = ("keras", "torch")  # module names under train/


def load_data(config: TrainConfig) -> Dataset:
    """The article's data, or the validated CSV `config.data` (raises InputError naming file, row, column)."""
    if config.data is None:
        return article_data()
    return load_csv(config.data, config.target, config.features)


def _fit_and_save(name: str, data: Dataset, config: TrainConfig, path: Path) -> FitResult:
    """Train one framework and save its model to `path`."""
    trainer = importlib.import_module(f"train.{name}")
    model, result = trainer.train(data, config)
    trainer.save(model, path)
    return result


def _child_context() -> multiprocessing.context.BaseContext:
    """fork while no framework (and so no framework thread) is loaded: it skips the child's
    interpreter start and imports; spawn otherwise, which is always safe."""
    heavy = {"tensorflow", "torch", "keras"} & set(sys.modules)
    return multiprocessing.get_context("spawn" if heavy else "fork")


def _child_main(conn, name: str, data: Dataset, config: TrainConfig, path: Path, verbose: bool) -> None:
    """Child process: train, send ("ok", result) or ("error", exception), exit at once.

    `os._exit` skips torch's interpreter teardown: the model file is written and the parent
    has the result, and the parent's pipes stay open only until the child is gone.
    """
    cli.configure_logging(verbose)
    try:
        reply = ("ok", _fit_and_save(name, data, config, path))
    except BaseException as exc:
        reply = ("error", exc)
    with contextlib.suppress(OSError):
        conn.send(reply)
        conn.close()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


class _Side:
    """One framework trained in a child process while this one trains the others."""

    def __init__(self, name: str, data: Dataset, config: TrainConfig, path: Path):
        ctx = _child_context()
        self._recv, send = ctx.Pipe(duplex=False)
        verbose = logging.getLogger("train").getEffectiveLevel() <= logging.DEBUG
        self._proc = ctx.Process(
            target=_child_main, args=(send, name, data, config, path, verbose), daemon=True
        )
        self._proc.start()
        send.close()

    def result(self) -> FitResult:
        try:
            kind, payload = self._recv.recv()
        except EOFError:
            raise RuntimeError(
                f"the training process for torch died (exit code {self._proc.exitcode})"
            ) from None
        finally:
            self._proc.join()
        if kind == "error":
            raise payload
        return payload


def train_all(
    config: TrainConfig, data: Dataset, frameworks=FRAMEWORKS, parallel: bool = False
) -> list[FitResult]:
    """Train each framework, then save every model and merge the results into the training record.

    With `parallel` (the CLI's default) and both frameworks, torch trains in a child process
    while this one imports TensorFlow and trains Keras: the two imports (~2 s and ~1 s) and
    trainings overlap on the two cores, the biggest item of `python -m train.all`'s wall time
    (bench row 1). Each framework is seeded the same way either way, so the parameters are
    identical. Nothing is written until all frameworks trained: a bad --probe, a divergence or
    a run killed while training leaves the artifacts directory as it was.
    """
    reference_block(data, config.probe)  # validates --probe against the data's width
    saves: list[tuple[FitResult, Callable[[Path], None]]] = []
    with tempfile.TemporaryDirectory(prefix="train-") as scratch:
        side = None
        if parallel and len(frameworks) > 1 and "torch" in frameworks:
            staged = Path(scratch) / "torch_model"
            side = _Side("torch", data, config, staged)
        for name in frameworks:
            if side is not None and name == "torch":
                continue
            trainer = importlib.import_module(f"train.{name}")
            model, result = trainer.train(data, config)
            saves.append((result, lambda p, trainer=trainer, model=model: trainer.save(model, p)))
        if side is not None:
            result = side.result()  # re-raises the child's DivergenceError etc.
            saves.insert(frameworks.index("torch"), (result, lambda p: shutil.copyfile(staged, p)))
        artifacts = cli.ensure_dir(Path(config.artifacts), create=True)
        # The writes close together under the directory lock, the record last.
        with locked(artifacts), transaction(artifacts):  # models and record land together
            for result, save in saves:
                atomic_write_with(artifacts / result.model_file, save)
            write_record(artifacts, config, data, [result for result, _ in saves])
    return [result for result, _ in saves]


def write_record(artifacts: Path, config: TrainConfig, data: Dataset, results: list[FitResult]) -> Path:
    """Write `training.json`, keeping another framework's earlier run on the same data."""
    path = artifacts / TRAINING_RECORD
    models = {}
    if path.is_file():
        try:
            old = read_json(path, "python -m train.all")
            if old.get("data", {}).get("sha256") == data.sha256:
                models = {
                    k: v for k, v in old.get("models", {}).items() if (artifacts / v["model_file"]).is_file()
                }
        except Exception:  # an unreadable old record is replaced, not fatal
            models = {}
    for r in results:
        entry = r.to_json()
        entry["config"] = config.to_json()
        entry["model_sha256"] = sha256_file(staged(artifacts / r.model_file))
        models[r.model] = entry
    record = {
        "schema_version": 1,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "config": config.to_json(),
        "data": data.describe(),
        **reference_block(data, config.probe),
        "models": dict(sorted(models.items())),
        "library_versions": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            **{k: v for r in results for k, v in r.versions.items()},
        },
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
    names = record["data"].get("features", [])
    for i, w in enumerate(ref["weights"]):
        label = f"w[{names[i] if i < len(names) else i}]"[:15] if len(ref["weights"]) > 1 else "w"
        rows.append((label, [f"{r.weights[i]:.6f}" for r in results] + [f"{w:.6f}"]))
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
    if args.data is None and (args.target != "y" or args.features is not None):
        raise InputError("--target and --features select columns of a CSV; pass --data PATH.csv as well")
    config = TrainConfig(
        artifacts=args.artifacts,
        seed=args.seed,
        epochs=args.epochs,
        lr=args.lr,
        data=args.data,
        target=args.target,
        features=args.features,
        loss=args.loss,
        standardize=args.standardize,
        probe=args.probe,
    )
    if Path(config.artifacts).exists() and not Path(config.artifacts).is_dir():  # say so before training
        cli.ensure_dir(Path(config.artifacts), create=False)
    logger.info("config: %s", config.to_json())
    data = load_data(config)  # validated before anything is trained or written
    if config.data is not None:
        logger.info(
            "data: %s, %d rows, features %s, target %s",
            data.source,
            len(data.x),
            ", ".join(data.features),
            data.target,
        )
    results = train_all(config, data, args.frameworks, parallel=True)
    record = read_json(Path(config.artifacts) / TRAINING_RECORD, "python -m train.all")
    print(comparison_table(results, record))
    files = [str(Path(config.artifacts) / r.model_file) for r in results]
    print(f"wrote {', '.join(files)}, {Path(config.artifacts) / TRAINING_RECORD}")
    return 0


def column_list(text: str) -> tuple[str, ...]:
    """`--features a,b,c` -> ("a", "b", "c")."""
    names = tuple(n.strip() for n in text.split(","))
    if not all(names):
        raise argparse.ArgumentTypeError(f"{text!r} has an empty column name; give names like a,b,c")
    return names


def probe_points(text: str) -> tuple[tuple[float, ...], ...]:
    """`--probe 10,-5,1:2:3` -> ((10.0,), (-5.0,), (1.0, 2.0, 3.0))."""
    points = []
    for part in text.split(","):
        try:
            point = tuple(float(v) for v in part.split(":"))
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{part!r} is not a number (or n numbers joined by ':'); give e.g. 10,-5 or 1:2:3"
            ) from None
        if not all(math.isfinite(v) for v in point):
            raise argparse.ArgumentTypeError(f"{part!r} is not finite; give finite numbers, e.g. 10,-5")
        points.append(point)
    return tuple(points)


def build_parser(frameworks=FRAMEWORKS) -> argparse.ArgumentParser:
    """The training CLI's parser (also used by `python -m pipeline`)."""
    names = " and ".join(frameworks)
    command = "train.all" if len(frameworks) > 1 else "train." + frameworks[0]
    p = cli.parser(
        f"Train the article's one-neuron linear regression in {names}, on the article's data or on your CSV.",
        f"python -m {command} --data houses.csv --target price --standardize",
        command=command,
    )
    cli.artifacts_arg(p)
    defaults = TrainConfig()
    p.add_argument(
        "--data",
        type=Path,
        default=None,
        metavar="CSV",
        help="CSV with a header line to train on; None: the article's six points",
    )
    p.add_argument("--target", default=defaults.target, metavar="NAME", help="target column of --data")
    p.add_argument(
        "--features",
        type=column_list,
        default=None,
        metavar="A,B",
        help="feature columns of --data; None: every column but the target",
    )
    p.add_argument("--seed", type=int, default=defaults.seed, help="seed for weight initialisation")
    p.add_argument("--epochs", type=cli.positive_int, default=defaults.epochs, help="full-batch SGD updates")
    p.add_argument("--lr", type=cli.positive_float, default=defaults.lr, help="SGD learning rate")
    p.add_argument(
        "--loss",
        choices=LOSSES,
        default=defaults.loss,
        help="squared error reduced by 'mean' or 'sum' in both frameworks; 'article' = Keras mean, torch sum",
    )
    p.add_argument(
        "--standardize",
        action="store_true",
        help="train on standardized features; mean/scale are folded into the saved weights",
    )
    p.add_argument(
        "--probe",
        type=probe_points,
        default=(),
        metavar="V[,V...]",
        help="extra probe points for the check: V sets every feature to V; a:b:c gives one row",
    )
    p.set_defaults(frameworks=frameworks)
    return p


def main(frameworks=FRAMEWORKS) -> None:
    cli.run(run, build_parser(frameworks).parse_args(), fast_exit=True)


if __name__ == "__main__":
    main()
