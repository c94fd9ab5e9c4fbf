"""Write a valid `manifest.json` (core.schema) for ONNX files built inside a test."""

from __future__ import annotations

import hashlib
from pathlib import Path

from core.fsio import Root
from core.schema import (
    MANIFEST,
    ArtifactEntry,
    DataInfo,
    Manifest,
    Probe,
    RecordRef,
    Reference,
    Signature,
    TensorSpec,
)

ZERO = "0" * 64


def onnx_entry(directory: Path, name: str, signature: Signature) -> ArtifactEntry:
    """A manifest entry for `directory/<name>.onnx`, hashed as it is on disk."""
    path = Path(directory) / f"{name}.onnx"
    data = path.read_bytes()
    return ArtifactEntry(
        name=f"{name}.onnx",
        model=name,
        format="onnx",
        framework="onnx",
        framework_versions={},
        path=path.name,
        sha256=hashlib.sha256(data).hexdigest(),
        size=len(data),
        signature=signature,
        headline_y=0.0,
        source_probe_y=(0.0,),
        training_record_sha256=ZERO,
        created="2026-01-01T00:00:00+00:00",
    )


def write_manifest(directory: Path, entries: list[ArtifactEntry]) -> None:
    """A manifest naming `entries` (a one-row probe; the test models are not from a training run)."""
    manifest = Manifest(
        training_record=RecordRef("training.json", ZERO),
        data=DataInfo("test", ZERO, 1, ("x",), "y"),
        reference=Reference("none (a model built in the test)", (0.0,), 0.0),
        probe=Probe(x=((0.0,),), reference_y=(0.0,), headline_x=(0.0,), headline_reference_y=0.0),
        artifacts=tuple(entries),
    )
    Root(directory).write_json(MANIFEST, manifest.to_json())


def spec(name: str, dtype: str, *shape: int | str) -> TensorSpec:
    return TensorSpec(name, dtype, tuple(shape))
