"""Committing exports to `manifest.json` and tidying up after the commit (readers use `core.schema`)."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from collections.abc import Iterable

from core.errors import IntegrityError, MissingArtifactError
from core.fixes import fix
from core.fsio import VERSIONED, Root, sha256_path
from core.schema import (
    FORMATS,
    MANIFEST,
    SELFTEST_ATOL,
    SELFTEST_RTOL,
    TRAINING_RECORD,
    ArtifactEntry,
    Manifest,
    RecordRef,
    Signature,
    TrainingRecord,
)

logger = logging.getLogger(__name__)


def verify(root: Root, entry: ArtifactEntry) -> str:
    """The one sha256 check: resolve `entry`'s stored version inside `root` (a regular file, or a
    directory for a SavedModel) and compare its sha256 with the manifest's. Returns the path."""
    path = root.existing(entry.path, FORMATS[entry.format])
    actual = sha256_path(path)
    if actual != entry.sha256:
        raise IntegrityError(
            f"{path}: sha256 {actual} != manifest {entry.sha256}; the file was changed or "
            f"truncated after export; {fix('onnx' if entry.format == 'onnx' else 'export', root.dir)}"
        )
    return str(path)


def load_or_none(root: Root) -> Manifest | None:
    """The current manifest, or None when there is none or it is unreadable (an export replaces it)."""
    try:
        return Manifest.load(root.dir)
    except (MissingArtifactError, IntegrityError) as exc:
        if (root.dir / MANIFEST).exists():
            logger.warning("replacing an unreadable manifest: %s", exc)
        return None


def commit(
    root: Root, record: TrainingRecord | None, record_sha256: str | None, entries: Iterable[ArtifactEntry]
) -> tuple[Manifest, list[ArtifactEntry]]:
    """Merge `entries` into the manifest (replacing same-named ones) and rename it into place.

    This rename is an export's commit point. Entries exported from another training record
    describe models that no longer exist and are dropped, as are entries whose file is gone.
    Models brought in from a file (no training record: export.all --from-keras/--from-torch) are
    kept beside them. With `record` None (such an export), the manifest keeps the training run it
    already records, if any. Returns the new manifest and the dropped entries. Callers hold
    `root.locked()`.
    """
    entries = list(entries)
    new_names = {e.name for e in entries}
    new_models = {e.model for e in entries if e.training_record_sha256 is None}
    old = load_or_none(root)
    kept, dropped = [], []
    for entry in old.artifacts if old else ():
        if entry.name in new_names:
            continue
        stale = (
            entry.model in new_models  # a brought-in model re-exported: its other formats are replaced
            if entry.training_record_sha256 is None
            else record is not None and entry.training_record_sha256 != record_sha256
        )
        if stale or not (root.dir / entry.path).exists():
            dropped.append(entry)
        else:
            kept.append(entry)
    trained = record is not None
    manifest = Manifest(
        training_record=RecordRef(TRAINING_RECORD, record_sha256) if trained else old and old.training_record,
        data=record.data if trained else old and old.data,
        reference=record.reference if trained else old and old.reference,
        probe=record.probe if trained else old and old.probe,
        artifacts=tuple(sorted(kept + entries, key=lambda e: e.name)),
        selftest_atol=SELFTEST_ATOL,
        selftest_rtol=SELFTEST_RTOL,
    )
    root.write_json(MANIFEST, manifest.to_json())
    return manifest, dropped


def refresh_aliases(
    root: Root, manifest: Manifest, dropped: Iterable[ArtifactEntry] = (), keep: set[str] = frozenset()
) -> list[str]:
    """After a commit: point each entry's stable name at its stored version, remove the stable names
    of `dropped` entries, then delete stored versions no entry names (except those in `keep`: the
    previous manifest's, so a reader that just read it can still open them). Returns the removed names.

    Runs under the directory lock. A run killed here leaves the manifest and every file it names
    intact; only an alias may still show the previous version, which consumers detect by hash.
    Only `<model>.<12 hex>.<suffix>` names of the manifest's own models are ever deleted.
    """
    referenced = {e.path for e in manifest.artifacts} | {e.probe.path for e in manifest.artifacts if e.probe}
    dropped = list(dropped)
    models = {e.model for e in manifest.artifacts} | {e.model for e in dropped}
    for entry in manifest.artifacts:
        if (root.dir / entry.path).exists():
            root.point_alias(entry.alias, entry.path)
    removed = []
    for entry in dropped:
        if entry.alias not in referenced and entry.alias not in {e.alias for e in manifest.artifacts}:
            root.remove(entry.alias)
            removed.append(entry.alias)
    for path in root.dir.iterdir():
        match = VERSIONED.match(path.name)
        if match and match.group("model") in models and path.name not in referenced | keep:
            with contextlib.suppress(FileNotFoundError):
                root.remove(path.name)
            removed.append(path.name)
    return removed


def onnx_entry(
    root: Root, rel: str, model: str, signature: Signature, framework: str = "onnx"
) -> ArtifactEntry:
    """An entry for an ONNX file already in the directory that did not come from a training run."""
    path = root.existing(rel)
    return ArtifactEntry(
        name=rel,
        model=model,
        format="onnx",
        framework=framework,
        framework_versions={},
        path=rel,
        sha256=sha256_path(path),
        size=path.stat().st_size,
        signature=signature,
        created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    )


def write_standalone(root: Root, entries: Iterable[ArtifactEntry]) -> Manifest:
    """Write a manifest for models that did not come from a training run (no record, no probe)."""
    manifest = Manifest(training_record=None, data=None, reference=None, probe=None, artifacts=tuple(entries))
    root.write_json(MANIFEST, manifest.to_json())
    return manifest
