"""`artifacts/manifest.json`: the one index the check, the loader and embedding apps read.

Layout (see README "Artifacts"):
    {"schema_version": 1,
     "training_record": {"path", "sha256"},
     "data": {...}, "reference": {...}, "probe": {...},   # copied from the training record
     "artifacts": [{"name", "model", "format", "framework", "path", "sha256", "size",
                    "inputs", "outputs", "opset", "producer", "prediction_x10", ...}, ...]}
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from core.errors import InputError, MissingArtifactError
from core.fsio import atomic_write_json, point_alias

MANIFEST = "manifest.json"
TRAINING_RECORD = "training.json"
SCHEMA_VERSION = 1


def read_json(path: Path, fix: str) -> dict[str, Any]:
    """Read a JSON object from `path`; a missing or malformed file raises with `fix` in the message."""
    path = Path(path)
    if not path.is_file():
        raise MissingArtifactError(f"{path}: not found; run {fix}")
    try:
        obj = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not valid JSON ({exc}); re-run {fix}") from exc
    if not isinstance(obj, dict):
        raise InputError(f"{path}: expected a JSON object, got {type(obj).__name__}; re-run {fix}")
    return obj


def load_manifest(artifacts: Path) -> dict[str, Any]:
    """Load and minimally validate the manifest of an artifacts directory."""
    path = Path(artifacts) / MANIFEST
    manifest = read_json(path, "python -m export.all")
    entries = manifest.get("artifacts")
    if not isinstance(entries, list) or not all(
        isinstance(e, dict) and {"name", "path", "format", "sha256"} <= e.keys() for e in entries
    ):
        raise InputError(
            f"{path}: 'artifacts' must be a list of entries with name, path, format and sha256; "
            "re-run python -m export.all"
        )
    return manifest


def require_files(artifacts: Path, manifest: dict[str, Any], fmt: str | None = None) -> None:
    """Raise MissingArtifactError for the first entry (of format `fmt`) whose file is not there."""
    for entry in manifest["artifacts"]:
        if fmt is None or entry["format"] == fmt:
            path = Path(artifacts) / entry["path"]
            if not path.exists():
                raise MissingArtifactError(
                    f"{path}: named in {Path(artifacts) / MANIFEST} but missing; "
                    f"re-run python -m export.all --artifacts {artifacts}"
                )


def find_entry(manifest: dict[str, Any], name: str, fmt: str | None = None) -> dict[str, Any]:
    """The entry whose `name` (e.g. keras_linear.onnx) or `model` (with `fmt`) matches."""
    for entry in manifest["artifacts"]:
        if entry["name"] == name or (
            entry.get("model") == name and entry["format"] == (fmt or entry["format"])
        ):
            return entry
    known = ", ".join(sorted(e["name"] for e in manifest["artifacts"])) or "none"
    raise InputError(f"model {name!r} is not in the manifest; known: {known}")


def update_manifest(
    artifacts: Path, record: dict[str, Any], record_sha256: str, entries: list[dict[str, Any]]
) -> list[str]:
    """Merge `entries` into the manifest (replacing same-named ones) and write it atomically.

    Entries produced from a different training record are dropped: they describe models
    that no longer exist. Returns the names of the dropped entries. Callers hold
    `core.fsio.locked(artifacts)` around this read-modify-write.
    """
    path = Path(artifacts) / MANIFEST
    old: list[dict[str, Any]] = []
    if path.is_file():
        try:
            old = load_manifest(artifacts)["artifacts"]
        except InputError:
            old = []  # a corrupt manifest is rebuilt from what this export writes
    new_names = {e["name"] for e in entries}
    kept, dropped = [], []
    for entry in old:
        if entry["name"] in new_names:
            continue
        if (
            entry.get("training_record_sha256") != record_sha256
            or not (Path(artifacts) / entry["path"]).exists()
        ):
            dropped.append(entry["name"])
            continue
        kept.append(entry)
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "training_record": {"path": TRAINING_RECORD, "sha256": record_sha256},
        "data": record["data"],
        "reference": record["reference"],
        "probe": record["probe"],
        "artifacts": sorted(kept + entries, key=lambda e: e["name"]),
    }
    atomic_write_json(path, manifest)
    return dropped


# `<model>.<12 hex>.<format suffix>`: a stored version written by core.fsio.store_immutable.
VERSIONED = re.compile(r"^(?P<model>[^.]+)\.[0-9a-f]{12}(\..+)?$")


def refresh_aliases(artifacts: Path, dropped: Iterable[str] = ()) -> list[str]:
    """After a manifest commit: point each entry's stable name at its stored version, remove the
    stable names of `dropped` entries, then delete stored versions no entry names. Returns the
    removed names.

    Runs under the directory lock. A run killed before or during this step leaves the
    manifest and every file it names intact; only an alias may still show the previous
    version, which the loader and the check detect by hash. Only `<model>.<12 hex>.<suffix>`
    names of the manifest's own models are ever deleted.
    """
    artifacts = Path(artifacts)
    manifest = load_manifest(artifacts)
    referenced, models = set(), set()
    for entry in manifest["artifacts"]:
        referenced.add(entry["path"])
        models.add(entry.get("model"))
        alias = entry.get("alias")
        if alias and alias != entry["path"] and (artifacts / entry["path"]).exists():
            point_alias(artifacts, alias, artifacts / entry["path"])
    removed = []
    for name in dropped:
        alias = artifacts / name
        if name not in referenced and (alias.is_symlink() or alias.is_file()):
            alias.unlink()
            removed.append(name)
    for path in artifacts.iterdir():
        match = VERSIONED.match(path.name)
        if (
            match
            and match.group("model") in models | {name.partition(".")[0] for name in dropped}
            and path.name not in referenced
            and not path.is_symlink()
        ):
            with contextlib.suppress(FileNotFoundError):
                shutil.rmtree(path) if path.is_dir() else path.unlink()
            removed.append(path.name)
    return removed
