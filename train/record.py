"""The training record (`training.json`) a run writes, and the comparison table it prints."""

from __future__ import annotations

import datetime as dt
import platform

import numpy as np

from oneneuron.errors import IntegrityError, MissingArtifactError
from oneneuron.fsio import Root, Transaction, sha256_file
from oneneuron.record import LEAST_SQUARES, FitMetrics, TrainingRecord
from train.config import TrainConfig
from train.data import Dataset, reference_block
from train.result import FitResult
from train.split import fit_metrics


def build_record(
    root: Root, txn: Transaction, config: TrainConfig, data: Dataset, results: list[FitResult]
) -> TrainingRecord:
    """The new record: these results, plus another framework's earlier run on the same data."""
    models = {}
    frameworks = {r.framework for r in results}
    try:
        old = TrainingRecord.load(root.dir)
        if old.data.sha256 == data.sha256 and old.data.split == data.split:  # same rows trained on
            # another framework's run; not this framework's other model
            models = {
                k: m
                for k, m in old.models.items()
                if m.framework not in frameworks and (root.dir / m.model_file).is_file()
            }
    except (MissingArtifactError, IntegrityError):
        models = {}  # no record yet, or an unreadable one: it is replaced
    for r in results:
        models[r.model] = r.to_record(config.to_json(), sha256_file(txn.staged(r.model_file)))
    reference, probe = reference_block(data, config.probe)
    # RMSE/R² from the recorded parameters: linear models (an MLP's are not recorded as weights)
    metrics = {
        name: fit_metrics(data, m.weights, m.bias)
        for name, m in sorted(models.items())
        if m.weights is not None
    }
    metrics[LEAST_SQUARES] = fit_metrics(data, reference.weights, reference.bias)
    return TrainingRecord(
        created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        config=config.to_json(),
        data=data.info(),
        reference=reference,
        probe=probe,
        models=dict(sorted(models.items())),
        library_versions={
            "python": platform.python_version(),
            "numpy": np.__version__,
            **{k: v for r in results for k, v in r.versions.items()},
        },
        metrics=metrics,
    )


def comparison_table(results: list[FitResult], record: TrainingRecord) -> str:
    """The article's comparison, side by side, with the least-squares reference."""
    ref, probe = record.reference, record.probe
    target = probe.headline_reference_y
    x10 = ", ".join(f"{v:g}" for v in probe.headline_x)
    cols = [f"{r.model} ({r.framework})" for r in results] + ["least squares"]
    rows = [("final loss", [f"{r.final_loss:.6g}" for r in results] + [""])]
    names = record.data.features
    if any(r.weights is None for r in results):  # an MLP: its size, not its weights
        rows.insert(0, ("model", [r.architecture.describe() for r in results] + ["linear"]))
        rows.append(("parameters", [f"{r.parameters:,}" for r in results] + [f"{len(ref.weights) + 1}"]))
    if any(r.weights is not None for r in results):  # weights rows for linear models only
        for i, w in enumerate(ref.weights):
            label = f"w[{names[i] if i < len(names) else i}]"[:15] if len(ref.weights) > 1 else "w"
            cells = ["" if r.weights is None else f"{r.weights[i]:.6f}" for r in results]
            rows.append((label, cells + [f"{w:.6f}"]))
        rows.append(("b", ["" if r.bias is None else f"{r.bias:.6f}" for r in results] + [f"{ref.bias:.6f}"]))
    rows.append((f"y(x={x10})", [f"{r.headline_y:.6f}" for r in results] + [f"{target:.6f}"]))
    rows.append((f"|y - {target:g}|", [f"{abs(r.headline_y - target):.6f}" for r in results] + [""]))
    rows.append(("train time (s)", [f"{r.seconds:.3f}" for r in results] + [""]))
    if record.data.source != "article":  # the article's table stays the article's
        keys = [r.model for r in results] + [LEAST_SQUARES]
        rows += metric_rows([record.metrics.get(k) for k in keys])
    width = max(len(c) for c in cols) + 2
    lines = [" " * 16 + "".join(c.rjust(width) for c in cols)]
    lines += [label.ljust(16) + "".join(v.rjust(width) for v in values) for label, values in rows]
    if record.data.source != "article":
        lines.append(split_line(record))
    return "\n".join(lines)


def metric_rows(metrics: list[FitMetrics | None]) -> list[tuple[str, list[str]]]:
    """RMSE and R² on the train rows and (with a split) the test rows, one column per model."""

    def cells(part: str, what: str) -> list[str]:
        out = []
        for m in metrics:
            value = getattr(getattr(m, part, None), what, None) if m else None
            out.append("n/a" if value is None else f"{value:.6g}")
        return out

    rows = [("RMSE train", cells("train", "rmse"))]
    has_test = any(m is not None and m.test is not None for m in metrics)
    if has_test:
        rows.append(("RMSE test", cells("test", "rmse")))
    rows.append(("R² train", cells("train", "r2")))
    if has_test:
        rows.append(("R² test", cells("test", "r2")))
    return rows


def split_line(record: TrainingRecord) -> str:
    """Which rows trained and which were held out (below the table)."""
    data, split = record.data, record.data.split
    if split is None or split.test_rows == 0:
        asked = ""
        if split is not None:
            asked = f" (--test-fraction {split.test_fraction:g}" + (
                f": {data.rows} rows are too few to hold any out)" if split.test_fraction else ")"
            )
        return f"rows: all {data.rows} trained, none held out{asked}; least squares fit on the same rows"
    return (
        f"rows: {split.train_rows} train, {split.test_rows} test (--test-fraction "
        f"{split.test_fraction:g}, seed {split.seed}); least squares fit on the train rows only"
    )
