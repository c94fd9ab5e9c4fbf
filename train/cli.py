"""The training CLI every `python -m train.<all|keras|torch>` shares: flags, config, the table.

Argument errors (a bad flag, a non-directory --artifacts, a bad CSV) are reported before any
framework is imported.
"""

from __future__ import annotations

import argparse
import logging
import math
from pathlib import Path

from oneneuron import cli
from oneneuron.architecture import ACTIVATIONS
from oneneuron.errors import InputError
from oneneuron.record import TrainingRecord
from oneneuron.schema import TRAINING_RECORD
from train.config import LOSSES, TrainConfig
from train.mlp import parse_model

logger = logging.getLogger(__name__)

FRAMEWORKS = ("keras", "torch")  # module names under train/


def run(args) -> int:
    """Train from parsed CLI arguments and print the comparison table."""
    if args.data is None and (args.target != "y" or args.features is not None):
        raise InputError("--target and --features select columns of a CSV; pass --data PATH.csv as well")
    if args.data is None and args.test_fraction:
        raise InputError(
            f"--test-fraction {args.test_fraction:g}: the article's six points are all training data (its "
            "table is the article's); hold out rows of your own data with --data PATH.csv"
        )
    if args.activation is not None and args.model == "linear":
        raise InputError(
            f"--activation {args.activation} applies to hidden layers; pass --model mlp:H1,H2,... as well"
        )
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
        test_fraction=args.test_fraction,
        model=args.model,
        activation=args.activation,
    )
    if Path(config.artifacts).exists() and not Path(config.artifacts).is_dir():  # say so before training
        cli.ensure_dir(Path(config.artifacts), create=False)
    logger.info("config: %s", config.to_json())
    from train.all import load_data, train_all  # numpy and the CSV reader; frameworks load later
    from train.record import comparison_table

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
    print(comparison_table(results, TrainingRecord.load(config.artifacts)))
    files = [str(Path(config.artifacts) / r.model_file) for r in results]
    print(f"wrote {', '.join(files)}, {Path(config.artifacts) / TRAINING_RECORD}")
    return 0


def column_list(text: str) -> tuple[str, ...]:
    """`--features a,b,c` -> ("a", "b", "c")."""
    names = tuple(n.strip() for n in text.split(","))
    if not all(names):
        raise argparse.ArgumentTypeError(f"{text!r} has an empty column name; give names like a,b,c")
    return names


def fraction(text: str) -> float:
    """`--test-fraction 0.2` -> 0.2, in [0, 1)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number; give a fraction like 0.2") from None
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(
            f"{text} is not in [0, 1); give a fraction like 0.2 (0: no test rows)"
        )
    return value


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
        f"Train the article's one-neuron linear regression (or an MLP, --model) in {names}, on the "
        "article's data or on your CSV.",
        f"python -m {command} --data houses.csv --target price --standardize",
        command=command,
    )
    cli.artifacts_arg(p)
    cli.lock_timeout_arg(p)
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
    p.add_argument(
        "--model",
        type=parse_model,
        default=defaults.model,
        metavar="linear|mlp:H1,H2",
        help="linear: the article's one neuron; mlp:16,16: hidden layers of 16 and 16 units, then one output",
    )
    p.add_argument(
        "--activation",
        choices=ACTIVATIONS,
        default=None,
        help=f"activation after each hidden layer of --model mlp:...; None: {ACTIVATIONS[0]}",
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
    p.add_argument(
        "--test-fraction",
        type=fraction,
        default=None,
        metavar="F",
        help="share of --data rows held out (seeded by --seed) for test RMSE and R²; None: 0.2 for a CSV "
        "(fewer if the file is too small), 0 for the article's six points; 0 trains on every row",
    )
    p.set_defaults(frameworks=frameworks)
    return p


def main(frameworks=FRAMEWORKS) -> None:
    cli.run(run, build_parser(frameworks).parse_args(), fast_exit=True)
