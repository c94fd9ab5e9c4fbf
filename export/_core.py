"""What every exporter shares: reading the trained models, manifest entries, publishing."""

from __future__ import annotations

import datetime as dt
import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core import cli
from core.errors import IntegrityError, MissingArtifactError
from core.fsio import locked, sha256_file, size_of, store_immutable
from core.manifest import TRAINING_RECORD, read_json, refresh_aliases, update_manifest

logger = logging.getLogger(__name__)

TRAIN_FIX = "python -m train.all"
# The trained models every exporter reads: model name -> trainer module.
TRAINERS = {"keras_linear": "train.keras", "torch_linear": "train.torch"}


@dataclass
class Source:
    """A trained model loaded in its own framework, with its predictions on the probe batch."""

    name: str  # keras_linear / torch_linear
    framework: str  # tensorflow / torch
    versions: dict[str, str]
    model: Any  # the keras.Model or torch.nn.Module
    n_features: int
    prediction_x10: float
    probe_y: list[float]


@dataclass
class Run:
    """One export run: the artifacts directory and the training record it exports from."""

    artifacts: Path
    record: dict[str, Any]
    record_sha256: str

    @property
    def probe(self) -> np.ndarray:
        return np.asarray(self.record["probe"]["x"], dtype=np.float32)

    @property
    def headline(self) -> np.ndarray:
        return np.asarray([self.record["probe"]["headline_x"]], dtype=np.float32)


def open_run(artifacts: Path) -> Run:
    """Read the training record; missing training output exits 2 naming the file and the fix."""
    artifacts = cli.ensure_dir(Path(artifacts), create=False)
    path = artifacts / TRAINING_RECORD
    if not path.is_file():
        raise MissingArtifactError(f"{path}: not found; run {TRAIN_FIX} --artifacts {artifacts} first")
    return Run(artifacts, read_json(path, TRAIN_FIX), sha256_file(path))


def load_source(run: Run, name: str) -> Source:
    """Load trained model `name` (checking its sha256 against the record) and run the probe batch
    through it in its own framework."""
    info = run.record.get("models", {}).get(name)
    path = run.artifacts / (info["model_file"] if info else name)
    if info is None or not path.is_file():
        raise MissingArtifactError(
            f"{path}: trained model {name} not found; run {TRAIN_FIX} --artifacts {run.artifacts}"
        )
    actual = sha256_file(path)
    if actual != info["model_sha256"]:
        raise IntegrityError(
            f"{path}: sha256 {actual[:12]}... != training record {info['model_sha256'][:12]}...; "
            f"re-run {TRAIN_FIX} --artifacts {run.artifacts}"
        )
    trainer = importlib.import_module(TRAINERS[name])
    n = run.record["data"]["n_features"]
    model = trainer.load(path, n)
    probe_y = np.asarray(trainer.predict(model, run.probe), dtype=np.float64).reshape(-1)
    x10 = float(trainer.predict(model, run.headline).reshape(-1)[0])
    return Source(name, info["framework"], info["versions"], model, n, x10, probe_y.tolist())


def signature(n_features: int, batch: str | None = "batch") -> dict[str, list]:
    """The one signature every artifact has: x float32 [batch, n] -> y float32 [batch, 1]."""
    return {
        "inputs": [{"name": "x", "dtype": "float32", "shape": [batch, n_features]}],
        "outputs": [{"name": "y", "dtype": "float32", "shape": [batch, 1]}],
    }


def store(run: Run, name: str, write: Callable[[Path], None]) -> tuple[Path, str]:
    """Write artifact `name` (e.g. keras_linear.onnx) as an immutable stored version.

    `write(tmp_path)` produces the file or directory. The manifest names the stored version
    (`keras_linear.<sha12>.onnx`) and `name` becomes an alias of it once the manifest is
    committed, so a run killed at any point never leaves the manifest naming changed bytes.
    """
    return store_immutable(run.artifacts, name, write)


def entry(
    run: Run, source: Source, fmt: str, name: str, stored: tuple[Path, str], **extra: Any
) -> dict[str, Any]:
    """A manifest entry for artifact `name` whose stored version `store` returned."""
    path, digest = stored
    return {
        "name": name,
        "alias": name,
        "model": source.name,
        "format": fmt,
        "framework": source.framework,
        "framework_versions": source.versions,
        "path": path.relative_to(run.artifacts).as_posix(),
        "sha256": digest,
        "size": size_of(path),
        **signature(source.n_features),
        **extra,
        "prediction_x10": source.prediction_x10,
        "source_probe_y": source.probe_y,
        "training_record_sha256": run.record_sha256,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


def export_format(artifacts: Path, write: Callable[[Run], list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Run one format's `write(run) -> entries` and merge the entries into the manifest.

    The whole export holds the directory lock, so two exports into one directory run one
    after the other. Files go to new immutable names, the manifest is written last (the
    commit point), then the stable names are pointed at the new versions and old ones removed.
    """
    run = open_run(artifacts)
    # No journal needed here (unlike training, core.fsio.transaction): stored versions are
    # immutable and the manifest's atomic rename is the single commit point.
    with locked(run.artifacts):
        entries = write(run)
        dropped = update_manifest(run.artifacts, run.record, run.record_sha256, entries)
        refresh_aliases(run.artifacts, dropped)
    if dropped:
        logger.warning(
            "dropped stale manifest entries from an earlier training run: %s; "
            "re-run python -m export.all to export them again",
            ", ".join(dropped),
        )
    return entries


def print_entries(entries: list[dict[str, Any]], artifacts: Path) -> None:
    """One line per artifact written, then where everything went."""
    for e in entries:
        print(
            f"[ok] {e['name']:28s} {e['size']:>9,d} bytes  sha256 {e['sha256'][:12]}"
            f"  y(10) = {e['prediction_x10']:.6f}"
        )
    print(
        f"wrote {', '.join(str(artifacts / e['name']) for e in entries)}; "
        f"manifest {artifacts / 'manifest.json'}"
    )


def main_for(fmt: str, export: Callable[[Path], list[dict[str, Any]]]) -> None:
    """The CLI every `python -m export.<format>` shares."""
    p = cli.parser(
        f"Export the trained models as {fmt} and record them in manifest.json.",
        f"python -m export.{fmt} --artifacts artifacts",
        command=f"export.{fmt}",
    )
    cli.artifacts_arg(p)

    def _main(args) -> int:
        print_entries(export(args.artifacts), args.artifacts)
        return 0

    cli.run(_main, p.parse_args(), fast_exit=True)
