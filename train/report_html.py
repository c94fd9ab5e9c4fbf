"""The report's `index.html`: the comparison table, the run's setup and the figures.

Every number taken from the training record sits in a cell with `data-key` (its path in
training.json, e.g. `models.keras_linear.final_loss`) and `data-value` (the exact value, repr),
so tests/test_report.py can check that the page shows what the record holds.
"""

from __future__ import annotations

from html import escape
from typing import Any

import numpy as np

from oneneuron.record import LEAST_SQUARES, TrainingRecord
from oneneuron.schema import Manifest
from train.data import Dataset

_CSS = """body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}
table{border-collapse:collapse;margin:1rem 0}td,th{border:1px solid #ccc;padding:.3rem .6rem}
td.num{text-align:right;font-family:ui-monospace,monospace}th{background:#f3f3f3;text-align:left}
img{max-width:100%;border:1px solid #ddd;margin:.5rem 0}code{background:#f3f3f3;padding:0 .2rem}
.warn{color:#a40}"""


def _num(value: float, key: str | None = None, fmt: str = ".6f") -> str:
    """A numeric cell; with `key`, tagged with its record path and exact value."""
    tag = f' data-key="{escape(key)}" data-value="{float(value)!r}"' if key else ""
    return f'<td class="num"{tag}>{format(float(value), fmt)}</td>'


def _text(value: Any) -> str:
    return f"<td>{escape(str(value))}</td>"


def comparison_rows(record: TrainingRecord) -> list[str]:
    """Table rows: one per quantity, one column per model plus least squares."""
    models, ref, probe = record.models, record.reference, record.probe
    names = list(models)
    features = record.data.features
    target = probe.headline_reference_y
    probe_x = np.asarray(probe.x, dtype=np.float64)
    reference_y = np.asarray(probe.reference_y, dtype=np.float64)
    blank = "<td></td>"
    rows = [
        "<tr><th></th>"
        + "".join(f"<th>{escape(n)} ({escape(models[n].framework)})</th>" for n in names)
        + "<th>least squares</th></tr>"
    ]

    def row(label: str, cells: list[str]) -> None:
        rows.append(f"<tr><th>{escape(label)}</th>{''.join(cells)}</tr>")

    linear = [n for n in names if models[n].weights is not None]
    if len(linear) < len(names):  # an MLP: what it is and how big; weights rows for linear models only
        row("model", [_text(models[n].architecture.describe()) for n in names] + [_text("linear")])
        row(
            "parameters",
            [
                blank
                if models[n].parameters is None
                else _num(models[n].parameters, f"models.{n}.parameters", ",.0f")
                for n in names
            ]
            + [_num(len(ref.weights) + 1, fmt=",.0f")],
        )
    row("loss", [_text(models[n].loss) for n in names] + [blank])
    row(
        "final loss",
        [_num(models[n].final_loss, f"models.{n}.final_loss", ".6g") for n in names] + [blank],
    )
    for i, feature in enumerate(features if linear else ()):
        label = "w" if len(features) == 1 else f"w[{feature}]"
        row(
            label,
            [_num(models[n].weights[i], f"models.{n}.weights.{i}") if n in linear else blank for n in names]
            + [_num(ref.weights[i], f"reference.weights.{i}")],
        )
    if linear:
        row(
            "b",
            [_num(models[n].bias, f"models.{n}.bias") if n in linear else blank for n in names]
            + [_num(ref.bias, "reference.bias")],
        )
    x = ", ".join(f"{v:g}" for v in probe.headline_x)
    row(
        f"y(x = {x})",
        [_num(models[n].headline_y, f"models.{n}.headline_y") for n in names]
        + [_num(target, "probe.headline_reference_y")],
    )
    row(f"|y - {target:g}|", [_num(abs(models[n].headline_y - target)) for n in names] + [blank])
    worst = [
        float(np.max(np.abs(probe_x @ np.asarray(models[n].weights) + models[n].bias - reference_y)))
        if n in linear
        else None
        for n in names
    ]
    row(
        f"max |y - least squares| over the {len(probe_x)} probe rows",
        [blank if v is None else _num(v, fmt=".3g") for v in worst] + [blank],
    )
    row(
        "train time (s)",
        [_num(models[n].train_seconds, f"models.{n}.train_seconds", ".3f") for n in names] + [blank],
    )
    row(
        "standardized",
        [
            _text("yes (mean/scale folded into the weights)" if models[n].standardization else "no")
            for n in names
        ]
        + [blank],
    )
    return rows


def metric_rows(record: TrainingRecord) -> list[str]:
    """RMSE and R² on the train rows and the held-out test rows: each model and least squares."""
    keys = [k for k in [*record.models, LEAST_SQUARES] if k in record.metrics]
    if not keys:
        return []
    has_test = any(record.metrics[k].test is not None for k in keys)
    rows = [
        "<tr><th></th>"
        + "".join(
            f"<th>{escape(k)} ({escape(record.models[k].framework)})</th>"
            if k in record.models
            else "<th>least squares</th>"
            for k in keys
        )
        + "</tr>"
    ]
    for part in ("train", "test") if has_test else ("train",):
        for what, label, fmt in (("rmse", "RMSE", ".6g"), ("r2", "R²", ".6f")):
            cells = []
            for k in keys:
                m = getattr(record.metrics[k], part)
                value = None if m is None else getattr(m, what)
                cells.append(
                    "<td>n/a</td>" if value is None else _num(value, f"metrics.{k}.{part}.{what}", fmt)
                )
            rows_n = getattr(record.metrics[keys[0]], part).rows
            rows.append(f"<tr><th>{label} {part} ({rows_n} rows)</th>{''.join(cells)}</tr>")
    return rows


def split_text(record: TrainingRecord) -> str:
    """Which rows trained the models and least squares, and which were held out."""
    data, split = record.data, record.data.split
    if split is None or split.test_rows == 0:
        return f"All {data.rows} rows trained the models and least squares; no rows were held out."
    return (
        f"{split.train_rows} rows trained both models and least squares; {split.test_rows} rows were held "
        f"out as test rows (--test-fraction {split.test_fraction:g}, seed {split.seed}, test row indices "
        f"sha256 <code>{split.test_index_sha256[:12]}</code>)."
    )


def setup_rows(record: TrainingRecord, record_sha256: str) -> list[str]:
    """How each model was trained, and which data."""
    data = record.data
    rows = [
        f"<tr><th>data</th><td colspan=2>{escape(str(data.source))}: {data.rows} rows, features "
        f"{escape(', '.join(data.features))}, target {escape(data.target)}</td></tr>",
        f"<tr><th>data sha256 (float32 x then y)</th><td colspan=2><code>{data.sha256}</code></td></tr>",
    ]
    if data.file_sha256:
        rows.append(f"<tr><th>file sha256</th><td colspan=2><code>{data.file_sha256}</code></td></tr>")
    rows.append(f"<tr><th>training.json sha256</th><td colspan=2><code>{record_sha256}</code></td></tr>")
    for name, model in record.models.items():
        config = model.config
        settings = ", ".join(
            f"{k} {config[k]}"
            for k in ("model", "activation", "seed", "epochs", "lr", "loss", "standardize")
            if config.get(k) is not None
        )
        rows.append(
            f"<tr><th>{escape(name)}</th><td colspan=2>{escape(settings)}; "
            f"{escape(' '.join(f'{k} {v}' for k, v in model.versions.items()))}</td></tr>"
        )
    return rows


def artifact_rows(manifest: Manifest, record_sha256: str) -> list[str]:
    """The exported artifacts, from the manifest."""
    rows = ["<tr><th>artifact</th><th>format</th><th>bytes</th><th>sha256</th><th>y(10) in source</th></tr>"]
    for e in manifest.artifacts:
        rows.append(
            f"<tr>{_text(e.name)}{_text(e.format)}{_num(e.size, fmt=',.0f')}"
            f"<td><code>{escape(e.sha256[:12])}</code></td>"
            f"{_num(e.headline_y)}</tr>"
        )
    return rows


def render_index(
    record: TrainingRecord,
    record_sha256: str,
    manifest: Manifest | None,
    data: Dataset,
    figures: list[str],
) -> str:
    """The whole page."""
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>Training report: {escape(str(data.source))}</title><style>{_CSS}</style></head><body>",
        f"<h1>Training report: {escape(str(data.source))}</h1>",
        f"<p>Trained {escape(record.created)}. "
        + (
            "Least squares (numpy, float64) is the analytic answer both single-neuron models approach.</p>"
            if all(m.architecture.is_linear for m in record.models.values())
            else "Least squares (numpy, float64) is the best affine fit, shown for comparison; an MLP is "
            "not bound to it.</p>"
        ),
        "<h2>Comparison</h2>",
        '<table id="comparison">',
        *comparison_rows(record),
        "</table>",
        "<h2>Fit: train and test rows</h2>",
        f"<p>{split_text(record)} RMSE and R² in float64 from the recorded weights.</p>",
        '<table id="metrics">',
        *metric_rows(record),
        "</table>",
        "<h2>Setup</h2>",
        '<table id="setup">',
        *setup_rows(record, record_sha256),
        "</table>",
    ]
    if manifest is not None:
        parts.append("<h2>Exported artifacts</h2>")
        if manifest.training_record.sha256 != record_sha256:
            parts.append(
                '<p class="warn">manifest.json was written for an earlier training run; '
                "<code>python -m export.all</code> exports the current one.</p>"
            )
        parts += ['<table id="artifacts">', *artifact_rows(manifest, record_sha256), "</table>"]
    parts.append("<h2>Figures</h2>")
    for name in figures:
        parts.append(
            f'<figure><img src="{escape(name)}" alt="{escape(name)}"><figcaption>{escape(name)}'
            "</figcaption></figure>"
        )
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
