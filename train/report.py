"""Write the visual report: `python -m train.report [--artifacts DIR] [--out DIR]`.

Reads `training.json` (and `manifest.json` when the models were exported) and writes
`ARTIFACTS/report/`: PNG figures made with matplotlib's Agg backend and an `index.html` with
the comparison table and the figures. One feature: the data with both fitted lines and the
least-squares line (and each line's distance from least squares); many features: predicted
vs actual; always: both training loss curves on a log scale. `make run` runs it after the check.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path

import numpy as np

from oneneuron import cli
from oneneuron.errors import InputError
from oneneuron.fixes import fix
from oneneuron.fsio import Root, removing_new_dirs_on_error, sha256_file
from oneneuron.record import ModelRecord, TrainingRecord
from oneneuron.schema import MANIFEST, TRAINING_RECORD, Manifest, Reference
from train.data import Dataset, article_data, load_csv
from train.report_html import render_index
from train.split import recorded_split

logger = logging.getLogger(__name__)

FIGURES = ("fit.png", "predicted_vs_actual.png", "loss.png")
STYLES = {"tensorflow": ("tab:blue", "-", "o"), "torch": ("tab:orange", "--", "s")}  # by source framework
_REFERENCE_STYLE = ("black", ":")


def recorded_data(record: TrainingRecord) -> Dataset:
    """Re-read the data the record was trained on and make sure it is the same data."""
    described = record.data
    if described.source == "article":
        data = article_data()
    else:
        try:
            data = load_csv(described.source, described.target, described.features)
        except InputError as exc:
            raise InputError(f"cannot re-read the training data for the report: {exc}") from None
    if data.sha256 != described.sha256:
        raise InputError(
            f"{described.source}: data sha256 {data.sha256[:12]}... != training record "
            f"{described.sha256[:12]}...; the file changed since training; {fix('train')}"
        )
    return recorded_split(data, described.split)  # the same test rows, or InputError


def _predict(x: np.ndarray, model: ModelRecord | Reference) -> np.ndarray:
    return x.astype(np.float64) @ np.asarray(model.weights, dtype=np.float64) + model.bias


def _style(model: ModelRecord) -> tuple[str, str, str]:
    return STYLES.get(model.framework, ("tab:green", "-.", "^"))


def _label(name: str, model: ModelRecord) -> str:
    """`keras_linear: y = 2·x - 1`, or `keras_mlp: mlp:16,16 relu, 337 parameters`."""
    if model.weights is None:
        return f"{name}: {model.architecture.describe()}, {model.parameters:,} parameters"
    return f"{name}: y = {model.weights[0]:.6f}·x {'+' if model.bias >= 0 else '-'} {abs(model.bias):.6f}"


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def fit_figure(plt, data: Dataset, record: TrainingRecord) -> bytes:
    """One feature: data, both fitted lines, least squares; below, each line minus least squares."""
    ref = record.reference
    headline = record.probe.headline_x[0]
    x = data.x[:, 0].astype(np.float64)
    lo, hi = min(x.min(), headline), max(x.max(), headline)
    pad = 0.05 * (hi - lo)
    grid = np.linspace(lo - pad, hi + pad, 200)[:, None]
    reference = _predict(grid, ref)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 6.5), sharex=True, height_ratios=(3, 2))
    train, test = data.train_part(), data.test_part()
    top.scatter(train.x[:, 0], train.y[:, 0], color="black", zorder=3, label=f"train rows ({len(train.x)})")
    if test is not None:
        top.scatter(
            test.x[:, 0],
            test.y[:, 0],
            facecolors="none",
            edgecolors="tab:red",
            zorder=3,
            label=f"test rows ({len(test.x)}, held out)",
        )
    top.plot(
        grid[:, 0], reference, color=_REFERENCE_STYLE[0], linestyle=_REFERENCE_STYLE[1], label="least squares"
    )
    bottom.axhline(0, color=_REFERENCE_STYLE[0], linestyle=_REFERENCE_STYLE[1], linewidth=1)
    for name, model in record.models.items():
        color, style, marker = _style(model)
        if model.weights is None:  # an MLP: the curve its run recorded (train/mlp.py fitted_points)
            xs = np.asarray(model.fitted.x, dtype=np.float64)[:, 0] if model.fitted else np.zeros(0)
            pred = np.asarray(model.fitted.y if model.fitted else (), dtype=np.float64)
            below = pred - _predict(xs[:, None], ref)
        else:
            xs, pred = grid[:, 0], _predict(grid, model)
            below = pred - reference
        top.plot(xs, pred, color=color, linestyle=style, label=_label(name, model))
        top.plot([headline], [model.headline_y], marker=marker, color=color, linestyle="none")
        bottom.plot(xs, below, color=color, linestyle=style, label=name)
    top.axvline(headline, color="grey", linewidth=0.8)
    top.set_ylabel(data.target)
    curves = "curves" if any(m.weights is None for m in record.models.values()) else "lines"
    top.set_title(
        f"{data.source}: fitted {curves} at x = {headline:g} vs least squares "
        f"{record.probe.headline_reference_y:.6g}"
    )
    top.legend(fontsize=8, loc="upper left")
    bottom.set_xlabel(data.features[0])
    bottom.set_ylabel("prediction − least squares")
    bottom.legend(fontsize=8)
    for ax in (top, bottom):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return _png(fig)


def scatter_figure(plt, data: Dataset, record: TrainingRecord) -> bytes:
    """Many features: each model's prediction against the actual target, with the diagonal."""
    actual = data.y[:, 0].astype(np.float64)
    fig, ax = plt.subplots(figsize=(6.5, 6))
    lo, hi = actual.min(), actual.max()
    ax.plot(
        [lo, hi],
        [lo, hi],
        color=_REFERENCE_STYLE[0],
        linestyle=_REFERENCE_STYLE[1],
        label="predicted = actual",
    )
    test_rows = np.zeros(len(actual), dtype=bool)
    if data.test_index is not None:
        test_rows[data.test_index] = True
    for name, model in record.models.items():
        color, _, marker = _style(model)
        if model.weights is None:  # an MLP: its predictions on the first data rows, from its run
            pred = np.asarray(model.fitted.y if model.fitted else (), dtype=np.float64)
            truth = actual[: len(pred)]
            rmse = float(np.sqrt(np.mean((pred - truth) ** 2))) if len(pred) else float("nan")
            rows = "" if len(pred) == len(actual) else f", first {len(pred):,} rows"
            ax.scatter(
                truth,
                pred,
                color=color,
                marker=marker,
                alpha=0.6,
                s=22,
                label=f"{name} (RMSE {rmse:.4g}{rows})",
            )
            continue
        pred = _predict(data.x, model)
        fit = record.metrics.get(name)
        rmse = f"RMSE train {fit.train.rmse:.4g}" if fit else ""
        rmse += f", test {fit.test.rmse:.4g}" if fit and fit.test else ""
        ax.scatter(
            actual[~test_rows],
            pred[~test_rows],
            color=color,
            marker=marker,
            alpha=0.6,
            s=22,
            label=f"{name} train rows ({rmse})" if rmse else name,
        )
        if test_rows.any():
            ax.scatter(
                actual[test_rows],
                pred[test_rows],
                facecolors="none",
                edgecolors=color,
                marker=marker,
                s=40,
                label=f"{name} test rows (held out)",
            )
    ax.set_xlabel(f"actual {data.target}")
    ax.set_ylabel(f"predicted {data.target}")
    ax.set_title(f"{data.source}: {data.n_features} features ({', '.join(data.features)[:60]})")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _png(fig)


def loss_figure(plt, record: TrainingRecord) -> bytes:
    """Both training loss curves, log scale, labelled with what each loss is."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, model in record.models.items():
        color, style, _ = _style(model)
        history = np.asarray(model.loss_history, dtype=np.float64)
        ax.semilogy(
            np.arange(1, len(history) + 1),
            history,
            color=color,
            linestyle=style,
            label=f"{name}: {model.loss}",
        )
    ax.set_xlabel("update (full batch)")
    ax.set_ylabel("training loss (log scale)")
    ax.set_title("training loss; note the two losses are not on the same scale unless --loss says so")
    ax.title.set_fontsize(9)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    return _png(fig)


def build_report(artifacts: Path, out: Path | None = None) -> list[Path]:
    """Write the figures and index.html into `out` (default ARTIFACTS/report); returns the files."""
    artifacts = cli.ensure_dir(Path(artifacts), create=False)
    root = Root(artifacts)
    record = TrainingRecord.load(artifacts)
    record_sha256 = sha256_file(root.existing(TRAINING_RECORD))
    manifest = Manifest.load(artifacts) if (artifacts / MANIFEST).exists() else None
    data = recorded_data(record)

    import matplotlib

    matplotlib.use("Agg")  # files only, no display; set before pyplot is imported
    import matplotlib.pyplot as plt

    figures = {"loss.png": loss_figure(plt, record)}
    if data.n_features == 1:
        figures["fit.png"] = fit_figure(plt, data, record)
    else:
        figures["predicted_vs_actual.png"] = scatter_figure(plt, data, record)
    plt.close("all")
    out = Path(out) if out is not None else root.path("report")  # never a symlink leaving the directory
    with removing_new_dirs_on_error(out):
        out.mkdir(parents=True, exist_ok=True)
        report = Root(out)
        written = []
        for name in FIGURES:  # a figure from an earlier run on other data would mislead: remove it
            if name in figures:
                written.append(report.write_bytes(name, figures[name]))
            elif (out / name).exists() or (out / name).is_symlink():
                report.remove(name)
        html = render_index(record, record_sha256, manifest, data, [n for n in FIGURES if n in figures])
        written.append(report.write_bytes("index.html", html.encode()))
    return written


def main() -> None:
    p = cli.parser(
        "Write the visual report (PNG figures and index.html) from the training record.",
        "python -m train.report --artifacts artifacts",
        command="train.report",
    )
    cli.artifacts_arg(p)
    p.add_argument(
        "--out", type=Path, default=None, metavar="DIR", help="report directory; None: ARTIFACTS/report"
    )

    def _main(args) -> int:
        files = build_report(args.artifacts, args.out)
        print(f"wrote {', '.join(str(f) for f in files)}")
        return 0

    cli.run(_main, p.parse_args())


if __name__ == "__main__":
    main()
