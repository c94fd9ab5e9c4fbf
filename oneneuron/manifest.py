"""Committing exports to `manifest.json` and tidying up after the commit (readers use `oneneuron.schema`)."""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import logging
import os
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Protocol

from oneneuron.errors import IntegrityError, MissingArtifactError, RollbackError
from oneneuron.fixes import fix
from oneneuron.fsio import (
    VERSIONED,
    Root,
    Transaction,
    copy_regular_tree,
    json_bytes,
    read_regular,
    sha256_path,
)
from oneneuron.record import TrainingRecord
from oneneuron.schema import (
    FORMATS,
    MANIFEST,
    MAX_GENERATION,
    SELFTEST_ATOL,
    SELFTEST_RTOL,
    SIGNATURE,
    TRAINING_RECORD,
    ArtifactEntry,
    Manifest,
    RecordRef,
    Signature,
    Signing,
)

logger = logging.getLogger(__name__)


class Seal(Protocol):
    """What signs a manifest as it is committed (export/sign.py `Sealer`): the manifest's `signing`
    field, and `stage(txn)`, which stages `model.sig` over `txn`'s staged manifest."""

    signing: Signing

    def stage(self, txn: Transaction) -> None: ...

    def describe(self) -> str: ...  # after the commit: one line saying what was signed


MAX_ARTIFACT_BYTES = 1 << 31  # one stored file read into memory (protobuf's limit for an ONNX model)


def verify(root: Root, entry: ArtifactEntry, rel: str | None = None) -> str:
    """The one sha256 check: resolve `entry`'s stored version (or `rel`, e.g. its stable name) inside
    `root` (a regular file, or a directory for a SavedModel) and compare its sha256 with the
    manifest's. Returns the path. Only says what the file held when it was hashed: a consumer that
    runs the artifact uses `read_verified` or `verified_copy` instead (issue 19)."""
    path = root.existing(rel or entry.path, FORMATS[entry.format])
    check_sha256(root, entry, path, sha256_path(path))
    return str(path)


def check_sha256(root: Root, entry: ArtifactEntry, path: Path, actual: str) -> None:
    """Raise IntegrityError when `actual`, the sha256 of what was read from `path`, is not `entry`'s."""
    if actual != entry.sha256:
        raise IntegrityError(
            f"{path}: sha256 {actual} != manifest {entry.sha256}; the file was changed or "
            f"truncated after export; {fix('onnx' if entry.format == 'onnx' else 'export', root.dir)}"
        )


def read_verified(root: Root, entry: ArtifactEntry) -> bytes:
    """`entry`'s stored file read once (bounded, a regular file, no symlink leaving the directory),
    checked against the manifest's sha256: the bytes to run. Whatever replaces the file afterwards,
    these bytes are the ones that were hashed (issue 19: hash the path, then open it again, ran a
    swapped-in model)."""
    path = root.existing(entry.path, FORMATS[entry.format])
    data = read_regular(path, MAX_ARTIFACT_BYTES, fix("export", root.dir))
    check_sha256(root, entry, path, hashlib.sha256(data).hexdigest())
    return data


@contextlib.contextmanager
def verified_copy(root: Root, entry: ArtifactEntry) -> Iterator[Path]:
    """A stored directory (a SavedModel) copied into a private temporary directory (mode 0700, removed
    afterwards) and the copy's sha256 checked: what a runtime that reads a directory loads."""
    path = root.existing(entry.path, FORMATS[entry.format])
    with tempfile.TemporaryDirectory(prefix="oneneuron-verified-") as tmp:  # mkdtemp: mode 0700
        copy = Path(tmp) / path.name
        copy_regular_tree(path, copy, MAX_ARTIFACT_BYTES, fix("export", root.dir))
        check_sha256(root, entry, path, sha256_path(copy))
        yield copy


def _intact(root: Root, entry: ArtifactEntry) -> bool:
    """Whether `entry`'s stored version is there, confined, of its kind and of its hash (a FIFO,
    a symlink leaving the directory or changed bytes are dropped from the next manifest)."""
    try:
        verify(root, entry)
    except (MissingArtifactError, IntegrityError) as exc:
        logger.warning("dropping %s from the manifest: %s", entry.name, exc)
        return False
    return True


def load_or_none(root: Root) -> Manifest | None:
    """The current manifest, or None when there is none or it is unreadable (an export replaces it)."""
    try:
        return Manifest.load(root.dir)
    except (MissingArtifactError, IntegrityError) as exc:
        if (root.dir / MANIFEST).exists():
            logger.warning("replacing an unreadable manifest: %s", exc)
        return None


KEEP_VERSIONS = 3  # stored versions of each model an export keeps (--keep-versions)


def commit(
    root: Root,
    record: TrainingRecord | None,
    record_sha256: str | None,
    entries: Iterable[ArtifactEntry],
    keep_versions: int = KEEP_VERSIONS,
    seal: Seal | None = None,
) -> tuple[Manifest, list[ArtifactEntry]]:
    """Merge `entries` into the manifest (replacing same-named ones) and commit it (`write`, with
    `seal`: signed in the same commit).

    This rename is an export's commit point. Each new entry gets its version (`number_versions`);
    the entry it replaces and that one's previous versions stay listed in `previous_versions`,
    `keep_versions` in all per (model, format). Entries exported from another training record
    that this export does not replace describe models that no longer exist and are dropped (with
    their previous versions), as are entries whose file is gone or damaged. Models brought in from
    a file (no training record: export.all --from-keras/--from-torch) are kept beside them. With
    `record` None (such an export), the manifest keeps the training run it already records, if
    any. Returns the new manifest and the dropped entries. Callers hold `root.locked()`.
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
        if stale or not _intact(root, entry):
            dropped.append(entry)
        else:
            kept.append(entry)
    trained = record is not None
    entries, previous = number_versions(root, old, entries, keep_versions)
    kept_names = {e.name for e in kept}
    previous += [e for e in (old.previous if old else ()) if e.name in kept_names]
    manifest = Manifest(
        training_record=RecordRef(TRAINING_RECORD, record_sha256) if trained else old and old.training_record,
        data=record.data if trained else old and old.data,
        reference=record.reference if trained else old and old.reference,
        probe=record.probe if trained else old and old.probe,
        artifacts=tuple(sorted(kept + entries, key=lambda e: e.name)),
        selftest_atol=SELFTEST_ATOL,
        selftest_rtol=SELFTEST_RTOL,
        previous=tuple(sorted(previous, key=lambda e: (e.name, -e.version))),
    )
    return write(root, manifest, seal), dropped


def write(root: Root, manifest: Manifest, seal: Seal | None = None) -> Manifest:
    """Commit `manifest` and, with `seal`, `model.sig` over it, in one journaled transaction
    (oneneuron/fsio.py): after a crash the next `locked()` finishes both renames or neither happened.
    Without `seal` the manifest is unsigned and a `model.sig` from an earlier export, which can no
    longer verify, is removed. The manifest's `generation` is the committed one's + 1 when anything
    else in it changed, the same when nothing did (`next_generation`). An unsigned manifest equal
    to the one in place, byte for byte, is not rewritten: re-running an export changes nothing
    (issue 19). Returns the manifest committed. Callers hold `root.locked()`."""
    manifest = replace(manifest, signing=seal.signing if seal else None)
    manifest = replace(manifest, generation=next_generation(root, manifest))
    if seal is None and _in_place(root, json_bytes(manifest.to_json())):
        return manifest
    with root.transaction() as txn:
        txn.write_json(MANIFEST, manifest.to_json())
        if seal is not None:
            seal.stage(txn)
    if seal is None and (root.dir / SIGNATURE).exists():
        root.remove(SIGNATURE)
        logger.warning(
            "removed %s: it signed the previous manifest; %s", root.dir / SIGNATURE, fix("sign", root.dir)
        )
    return manifest


def _in_place(root: Root, data: bytes) -> bool:
    """Whether `manifest.json` holds exactly `data` and no `model.sig` is beside it."""
    if os.path.lexists(root.dir / SIGNATURE):
        return False
    try:
        return root.read_bytes(MANIFEST, limit=len(data) + 1) == data
    except (MissingArtifactError, IntegrityError):
        return False


def next_generation(root: Root, manifest: Manifest) -> int:
    """`manifest`'s generation as committed over the current one: unchanged when it differs from
    the committed manifest in nothing but its generation (a no-op, e.g. signing again with the same
    key), else one more than the highest of the two. An unreadable committed manifest still gives
    its `generation` if that field reads as one, so a repair does not restart the count."""
    old = load_or_none(root)
    if old is not None:
        if replace(old, generation=0).to_json() == replace(manifest, generation=0).to_json():
            return max(old.generation, manifest.generation)
        last = old.generation
    else:
        last = _salvaged_generation(root)
    if max(last, manifest.generation) >= MAX_GENERATION:
        raise IntegrityError(
            f"{root.dir / MANIFEST}: generation {max(last, manifest.generation)} is at the limit "
            f"{MAX_GENERATION}; this directory's history cannot go further: export into a new directory"
        )
    return max(last, manifest.generation) + 1


def _salvaged_generation(root: Root) -> int:
    """The `generation` of a manifest that does not parse as a whole (0 when none can be read)."""
    from oneneuron.documents import read_json

    try:
        value = read_json(root.dir / MANIFEST, "").get("generation")
    except (OSError, IntegrityError, AttributeError):
        return 0
    return value if type(value) is int and 0 <= value < MAX_GENERATION else 0


def require_generation(where: Path, generation: int, floor: int) -> None:
    """The floor rule: refuse a manifest (`where`) whose generation is below `floor`
    (--min-generation), with RollbackError (exit 1) naming both and the fix."""
    if generation < floor:
        raise RollbackError(
            f"{where}: generation {generation} < the floor {floor} (--min-generation); a rolled-back or "
            f"stale directory: re-export, or lower the floor"
        )


def number_versions(
    root: Root, old: Manifest | None, entries: list[ArtifactEntry], keep_versions: int
) -> tuple[list[ArtifactEntry], list[ArtifactEntry]]:
    """Version `entries` against the `old` manifest: the same bytes as the newest keep its number,
    new bytes get the highest number seen + 1 (an older version with those bytes is dropped: it
    comes back as the newest). Returns (numbered entries, the previous versions to keep: at most
    `keep_versions - 1` per entry, newest first, whose stored files still exist)."""
    if keep_versions < 1:
        raise ValueError(f"keep_versions must be >= 1, got {keep_versions}")
    numbered, previous = [], []
    for entry in entries:
        history = list(old.versions(entry.model, entry.format)) if old else []
        history = [e for e in history if e.name == entry.name]
        newest = history[-1] if history else None
        # the same stored file (a damaged entry's file rewritten by a byte-stable export) is the
        # same version: it must not be listed twice
        if newest is not None and (newest.sha256 == entry.sha256 or newest.path == entry.path):
            version = newest.version
        else:
            version = max((e.version for e in history), default=0) + 1
        numbered.append(replace(entry, version=version))
        older = [
            e
            for e in reversed(history)
            if e.sha256 != entry.sha256
            and e.path != entry.path
            and e.version < version
            and (root.dir / e.path).exists()
        ]
        previous += older[: keep_versions - 1]
    return numbered, previous


def refresh_aliases(
    root: Root, manifest: Manifest, dropped: Iterable[ArtifactEntry] = (), keep: set[str] = frozenset()
) -> list[str]:
    """After a commit: point each entry's stable name at its stored version, remove the stable names
    of `dropped` entries, then delete stored versions no entry names (newest or previous; except
    those in `keep`: the previous manifest's, so a reader that just read it can still open them).
    Returns the removed names.

    Runs under the directory lock. A run killed here leaves the manifest and every file it names
    intact; only an alias may still show the previous version, which consumers detect by hash.
    Only `<model>.<12 hex>.<suffix>` names of the manifest's own models are ever deleted.
    """
    referenced = {e.path for e in manifest.all_entries()} | {
        e.probe.path for e in manifest.all_entries() if e.probe
    }
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
    return write(root, manifest)
