"""What every exporter shares: reading the trained models, manifest entries, committing exports."""

from __future__ import annotations

import datetime as dt
import importlib
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from export import FORMAT_TITLES, FORMATS
from oneneuron import cli
from oneneuron.architecture import LINEAR, Architecture
from oneneuron.errors import IntegrityError, MissingArtifactError
from oneneuron.fixes import fix
from oneneuron.fsio import JOURNAL, VERSIONED, Root, sha256_file, size_of
from oneneuron.manifest import KEEP_VERSIONS, Seal, commit, load_or_none, refresh_aliases, verify
from oneneuron.record import TrainingRecord
from oneneuron.schema import TRAINING_RECORD, ArtifactEntry, Manifest, linear_signature

logger = logging.getLogger(__name__)

# The trained models every exporter reads: source framework -> trainer module.
TRAINERS = {"tensorflow": "train.keras", "torch": "train.torch"}


@dataclass
class Source:
    """A trained model loaded in its own framework, with its predictions on the probe batch."""

    name: str  # keras_linear / torch_linear
    framework: str  # tensorflow / torch
    versions: dict[str, str]
    model: Any  # the keras.Model or torch.nn.Module
    n_features: int
    headline_y: float
    probe_y: list[float]
    architecture: Architecture = LINEAR
    probe_magnitude: list[float] | None = None  # an MLP's, train.mlp.magnitude on the probe rows


@dataclass
class Run:
    """One export run: the artifacts directory and the training record it exports from."""

    root: Root
    record: TrainingRecord | None  # None: models brought in from files (export/byom.py)
    record_sha256: str | None

    @property
    def artifacts(self) -> Path:
        return self.root.dir

    @property
    def probe(self) -> np.ndarray:
        return np.asarray(self.record.probe.x, dtype=np.float32)

    @property
    def headline(self) -> np.ndarray:
        return np.asarray([self.record.probe.headline_x], dtype=np.float32)


def open_run(artifacts: Path) -> Run:
    """Read the training record; missing training output exits 2 naming the file and the fix."""
    artifacts = cli.ensure_dir(Path(artifacts), create=False)
    root = Root(artifacts)
    record = TrainingRecord.load(artifacts)
    return Run(root, record, sha256_file(root.existing(TRAINING_RECORD)))


def trained(run: Run, framework: str) -> list[str]:
    """The record's models trained in `framework` (keras_linear, or keras_mlp for --model mlp:...)."""
    return [name for name, m in run.record.models.items() if m.framework == framework]


def load_source(run: Run, name: str) -> Source:
    """Load trained model `name` (checking its sha256 against the record) and run the probe batch
    through it in its own framework."""
    info = run.record.models.get(name)
    if info is None:
        raise MissingArtifactError(
            f"{run.artifacts / TRAINING_RECORD}: no trained model {name}; {fix('train', run.artifacts)}"
        )
    path = run.root.existing(info.model_file, named_in=TRAINING_RECORD, fix_key="train")
    actual = sha256_file(path)
    if actual != info.model_sha256:
        raise IntegrityError(
            f"{path}: sha256 {actual[:12]}... != training record {info.model_sha256[:12]}...; "
            f"{fix('train', run.artifacts)}"
        )
    trainer = importlib.import_module(TRAINERS[info.framework])
    n = run.record.data.n_features
    model = trainer.load(path, n, info.architecture)
    probe_y = np.asarray(trainer.predict(model, run.probe), dtype=np.float64).reshape(-1)
    headline_y = float(trainer.predict(model, run.headline).reshape(-1)[0])
    magnitude = None
    if not info.architecture.is_linear:
        from train.mlp import magnitude as mlp_magnitude

        magnitude = mlp_magnitude(trainer.layers(model), run.probe).tolist()
    return Source(
        name,
        info.framework,
        dict(info.versions),
        model,
        n,
        headline_y,
        probe_y.tolist(),
        info.architecture,
        magnitude,
    )


def store(run: Run, name: str, write: Callable[[Path], None]) -> tuple[str, str]:
    """Write artifact `name` (e.g. keras_linear.onnx) as an immutable stored version.

    `write(tmp_path)` produces the file or directory. The manifest names the stored version
    (`keras_linear.<sha12>.onnx`) and `name` becomes an alias of it once the manifest is
    committed, so a run killed at any point never leaves the manifest naming changed bytes.
    Returns (relative name, sha256).
    """
    return run.root.store_immutable(name, write)


def entry(
    run: Run, source: Source, fmt: str, name: str, stored: tuple[str, str], **extra: Any
) -> ArtifactEntry:
    """A manifest entry for artifact `name` whose stored version `store` returned."""
    rel, digest = stored
    return ArtifactEntry(
        name=name,
        model=source.name,
        format=fmt,
        framework=source.framework,
        framework_versions=source.versions,
        path=rel,
        sha256=digest,
        size=size_of(run.root.path(rel)),
        signature=linear_signature(source.n_features),
        headline_y=source.headline_y,
        source_probe_y=tuple(source.probe_y),
        training_record_sha256=run.record_sha256,
        created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        architecture=source.architecture,
        source_probe_magnitude=tuple(source.probe_magnitude or ()),
        **extra,
    )


Writer = Callable[[Run], list[ArtifactEntry]]


def export_formats(
    artifacts: Path,
    writers: Sequence[Writer],
    keep_versions: int = KEEP_VERSIONS,
    trained: bool = True,
    seal: Seal | None = None,
) -> list[ArtifactEntry]:
    """Run each format's `write(run) -> entries`, then commit all their entries in one manifest.

    The whole export holds the directory lock, so two exports into one directory run one after
    the other. Files go to new immutable names; the manifest's rename is the one commit point
    (readers see the previous exports until then, never a manifest without them); then the
    stable names are pointed at the new versions and versions nothing names are removed. Each
    model keeps its last `keep_versions` stored versions (oneneuron.manifest.commit numbers them).
    With `trained` False (export/byom.py) no training record is read and the directory may be new.
    With `seal` (export/sign.py `Sealer`) the manifest is signed and committed with `model.sig`.
    """
    run = (
        open_run(artifacts)
        if trained
        else Run(Root(cli.ensure_dir(Path(artifacts), create=True)), None, None)
    )
    with run.root.locked():
        previous = load_or_none(run.root)
        before = stored_versions(run.root)
        try:
            entries = [reuse_unchanged(run, previous, e) for write in writers for e in write(run)]
            manifest, dropped = commit(run.root, run.record, run.record_sha256, entries, keep_versions, seal)
        except BaseException:
            remove_new_versions(run.root, before)
            raise
        # The previous generation's files stay until the next export: a reader that read the old
        # manifest a moment ago can still open what it names.
        refresh_aliases(run.root, manifest, dropped, keep=named_files(previous))
    if dropped:
        logger.info(
            "removed %s: exported from an earlier training run (python -m export.all exports every "
            "format of the current one)",
            ", ".join(e.name for e in dropped),
        )
    return [manifest.find(e.name) or e for e in entries]  # with their versions


# What may differ between two exports of the same source that compute the same thing.
_NOT_THE_EXPORT = ("path", "sha256", "size", "created", "version")


def reuse_unchanged(run: Run, previous: Manifest | None, new: ArtifactEntry) -> ArtifactEntry:
    """`new`, or the newest stored version's own entry when `new` re-exports it unchanged.

    Unchanged: every field but the stored bytes and the time is equal (the same training record or
    source file, framework and converter versions, outputs on the probe rows, metadata), and either
    the bytes are equal or the format's `same_computation(run, new, old)` says both compute the
    same (TorchScript's bytes depend on the process's string hash seed, a SavedModel's on a
    per-process tf.function counter). Re-running an export then changes nothing: no new version,
    no eviction of a genuine old one, the manifest not rewritten (issue 19). `new`'s own stored
    file, no longer named, goes with the next `refresh_aliases`.
    """
    old = previous.find(new.name) if previous else None
    if old is None or old.name != new.name or _described(old) != _described(new):
        return new
    if old.sha256 == new.sha256:
        return old
    try:
        verify(run.root, old)  # only an intact stored version is kept
    except (MissingArtifactError, IntegrityError):
        return new
    module = FORMATS.get(new.format)
    same = getattr(importlib.import_module(module), "same_computation", None) if module else None
    if same is None or not same(run, run.root.path(new.path), run.root.path(old.path)):
        return new
    logger.info("%s: unchanged since version %d (%s); kept it", new.name, old.version, old.path)
    return old


def _described(entry: ArtifactEntry) -> dict[str, Any]:
    return {k: v for k, v in entry.to_json().items() if k not in _NOT_THE_EXPORT}


def stored_versions(root: Root) -> set[str]:
    """The names of the stored versions (`<model>.<sha12>.<suffix>`) in the directory."""
    return {p.name for p in root.dir.iterdir() if VERSIONED.match(p.name)}


def named_files(manifest: Manifest | None) -> set[str]:
    """Every stored version and probe file `manifest` names."""
    if manifest is None:
        return set()
    return {p for e in manifest.all_entries() for p in (e.path, e.probe and e.probe.path) if p}


def remove_new_versions(root: Root, before: set[str]) -> None:
    """After a failed export: delete the stored versions it wrote that no manifest names, so a
    failure (a full disk) leaves nothing behind and the next run has the space back (issue 19).
    Once the commit's journal exists the commit has happened: the next lock finishes it, so
    nothing is deleted."""
    if os.path.lexists(root.dir / JOURNAL):
        return
    try:
        new = stored_versions(root) - before - named_files(load_or_none(root))
        for name in sorted(new):
            root.remove(name)
    except OSError as exc:  # the export's own error is the one to report
        logger.warning("could not remove the stored versions of the failed export: %s", exc)
        return
    if new:
        logger.info("removed %s: stored by the failed export, never committed", ", ".join(sorted(new)))


def print_entries(entries: list[ArtifactEntry], artifacts: Path) -> None:
    """One line per artifact written, then where everything went."""
    for e in entries:
        what = (
            f"y(10) = {e.headline_y:.6f}"
            if e.headline_y is not None
            else f"source sha256 {e.source_sha256[:12]}"
        )
        print(f"[ok] {e.name:28s} {e.size:>9,d} bytes  sha256 {e.sha256[:12]}  {what}")
    print(
        f"wrote {', '.join(str(artifacts / e.name) for e in entries)}; manifest {artifacts / 'manifest.json'}"
    )


def main_for(
    fmt: str, export: Callable[[Path], list[ArtifactEntry]], options: Callable | None = None
) -> None:
    """The CLI every `python -m export.<format>` shares. `options(parser)` adds flags and returns
    `prepare(args)`, which checks them before the export and returns the `Seal` that signs the
    commit, or None; export.all uses it for `--sign-key` (export/sign.py `sign_option`)."""
    every = ", ".join(FORMAT_TITLES.values())
    what = f"in every format ({every})" if fmt == "all" else f"as {FORMAT_TITLES[fmt]}"
    p = cli.parser(
        f"Export the trained models {what} and record them in manifest.json.",
        f"python -m export.{fmt} --artifacts artifacts",
        command=f"export.{fmt}",
    )
    cli.artifacts_arg(p)
    cli.lock_timeout_arg(p)
    p.add_argument(
        "--keep-versions",
        type=cli.positive_int,
        default=KEEP_VERSIONS,
        metavar="K",
        help="stored versions of each model to keep (the newest and K-1 previous ones; a server "
        "serves each under /versions/{v})",
    )
    prepare = options(p) if options else lambda args: None

    def _main(args) -> int:
        seal = prepare(args)
        # an option may replace the export (export.all --from-keras/--from-torch: export/byom.py)
        chosen = getattr(args, "export", None)
        entries = chosen(args.artifacts, seal) if chosen else export(args.artifacts, args.keep_versions, seal)
        print_entries(entries, args.artifacts)
        if seal is not None:
            print(seal.describe())
        return 0

    cli.run(_main, p.parse_args(), fast_exit=True)
