"""Is `ARTIFACTS/triton` current? The marker `python -m export.triton` leaves, and what is stale.

`export.triton` writes `<repository>/.made_from.json` last: the sha256 of the manifest.json it
read, its TritonConfig, and per model the ONNX entry it copied (stored path and sha256). From that:

- `python -m export.all` refreshes `ARTIFACTS/triton` when the marker is there (a repository it
  made earlier), with the same configuration, and removes the model directories it made for
  models no longer exported; a directory without the marker is never touched;
- `python -m serve.check` adds a row for `ARTIFACTS/triton`: current, or which models are stale
  and the command that refreshes them.

Imports only the standard library and oneneuron/: the check stays free of onnx and the frameworks.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from oneneuron.errors import IntegrityError, MissingArtifactError
from oneneuron.fixes import fix
from oneneuron.fsio import Root, sha256_file
from oneneuron.schema import MANIFEST, Fields, Manifest, check_name, read_json

logger = logging.getLogger(__name__)

DEFAULT_DIR = "triton"  # ARTIFACTS/triton: the repository export.all keeps current
MARKER = ".made_from.json"


@dataclass(frozen=True)
class Marker:
    """What one `export.triton` run copied: model -> (stored ONNX path, sha256)."""

    manifest_sha256: str
    models: dict[str, tuple[str, str]]
    config: dict[str, int]  # TritonConfig fields

    @classmethod
    def load(cls, repo: Path) -> Marker | None:
        """The repository's marker; None when there is none. A damaged one is IntegrityError."""
        path = Path(repo) / MARKER
        if not path.exists() and not path.is_symlink():
            return None
        what_fixes = fix("triton", Path(repo).parent)
        f = Fields(read_json(path, what_fixes), path, "", what_fixes)
        models_f = f.sub("models")
        models = {}
        for key in list(models_f.obj)[:1024]:
            check_name(key, lambda problem, key=key: models_f.fail(problem, key))
            entry = models_f.sub(key)
            models[key] = (entry.name("path"), entry.sha256("sha256"))
        config_f = f.sub("config")
        config = {k: config_f.int(k, lo=0, hi=1 << 31) for k in list(config_f.obj)[:16]}
        return cls(f.sha256("manifest_sha256"), models, config)

    def to_json(self) -> dict[str, Any]:
        return {
            "made_by": "python -m export.triton",
            "manifest_sha256": self.manifest_sha256,
            "config": dict(self.config),
            "models": {m: {"path": p, "sha256": s} for m, (p, s) in sorted(self.models.items())},
        }


@dataclass(frozen=True)
class TritonState:
    """ARTIFACTS/triton against the current manifest."""

    repo: Path
    marked: bool  # made by export.triton (the marker is there and readable)
    current: tuple[str, ...]  # models whose repository copy is the manifest's ONNX file
    stale: tuple[tuple[str, str], ...]  # (model, why)
    fix: str

    @property
    def ok(self) -> bool:
        return self.marked and not self.stale

    def line(self) -> str:
        """One sentence for the check's row."""
        if not self.marked:
            return f"{self.repo}: not made by this toolkit's export.triton (no {MARKER}); {self.fix}"
        if not self.stale:
            return f"{self.repo}: current ({', '.join(self.current)})"
        why = "; ".join(f"{model}: {reason}" for model, reason in self.stale)
        return f"{self.repo}: stale: {why}; {self.fix}"


def triton_state(artifacts: Path, manifest: Manifest) -> TritonState | None:
    """ARTIFACTS/triton compared with `manifest`; None when there is no such directory."""
    root = Root(artifacts)
    repo = root.dir / DEFAULT_DIR
    if not repo.is_dir() or repo.is_symlink():
        return None
    how = fix("triton", root.dir) + " (python -m export.all refreshes a repository export.triton made)"
    try:
        marker = Marker.load(repo)
    except (IntegrityError, MissingArtifactError) as exc:
        return TritonState(repo, False, (), (("*", f"unreadable marker ({exc})"),), how)
    if marker is None:
        return TritonState(repo, False, (), (), how)
    exported = {e.model: (e.path, e.sha256) for e in manifest.entries("onnx")}
    stale, current = [], []
    for model in sorted(set(exported) | set(marker.models)):
        made = marker.models.get(model)
        if made is None:
            stale.append((model, f"missing (the manifest exports {exported[model][0]})"))
        elif model not in exported:
            stale.append((model, f"no longer exported, still in the repository (made from {made[0]})"))
        elif made[1] != exported[model][1]:
            stale.append((model, f"made from {made[0]}, the manifest now names {exported[model][0]}"))
        elif not _copy_matches(repo, model, made[1]):
            stale.append((model, f"{DEFAULT_DIR}/{model}/1/model.onnx differs from {made[0]}"))
        else:
            current.append(model)
    return TritonState(repo, True, tuple(current), tuple(stale), how)


def _copy_matches(repo: Path, model: str, sha256: str) -> bool:
    try:
        path = Root(repo).existing(f"{model}/1/model.onnx", named_in=MARKER, fix_key="triton")
        return sha256_file(path) == sha256
    except (IntegrityError, MissingArtifactError, OSError):
        return False


def manifest_sha256(artifacts: Path) -> str:
    return sha256_file(Root(artifacts).existing(MANIFEST))
