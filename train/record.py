"""The training record (`training.json`) a run writes, and the comparison table it prints."""

from __future__ import annotations

import datetime as dt
import platform

import numpy as np

from core.errors import IntegrityError, MissingArtifactError
from core.fsio import Root, Transaction, sha256_file
from core.schema import TrainingRecord
from train.config import TrainConfig
from train.data import Dataset, reference_block
from train.result import FitResult


def build_record(
    root: Root, txn: Transaction, config: TrainConfig, data: Dataset, results: list[FitResult]
) -> TrainingRecord:
    """The new record: these results, plus another framework's earlier run on the same data."""
    models = {}
    frameworks = {r.framework for r in results}
    try:
        old = TrainingRecord.load(root.dir)
        if old.data.sha256 == data.sha256:  # another framework's run; not this framework's other model
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
    width = max(len(c) for c in cols) + 2
    lines = [" " * 16 + "".join(c.rjust(width) for c in cols)]
    lines += [label.ljust(16) + "".join(v.rjust(width) for v in values) for label, values in rows]
    return "\n".join(lines)
