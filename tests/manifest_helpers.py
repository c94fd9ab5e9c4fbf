"""Write a valid `manifest.json` (oneneuron.schema) for ONNX files built inside a test."""

from __future__ import annotations

from pathlib import Path

from oneneuron.fsio import Root
from oneneuron.manifest import onnx_entry as _onnx_entry
from oneneuron.manifest import write_standalone
from oneneuron.schema import ArtifactEntry, Signature, TensorSpec


def onnx_entry(directory: Path, name: str, signature: Signature) -> ArtifactEntry:
    """A manifest entry for `directory/<name>.onnx`, hashed as it is on disk."""
    return _onnx_entry(Root(directory), f"{name}.onnx", name, signature)


def write_manifest(directory: Path, entries: list[ArtifactEntry]) -> None:
    """A manifest naming `entries` (models built in the test, not from a training run)."""
    write_standalone(Root(directory), entries)


def spec(name: str, dtype: str, *shape: int | str) -> TensorSpec:
    return TensorSpec(name, dtype, tuple(shape))
