"""Export the torch model as TorchScript: `python -m export.torchscript`.

`torch.jit` is deprecated in torch 2.13 (it says so on every call); the format is still
what many C++ and mobile runtimes load, so we keep it and silence exactly that warning.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING

from export._core import Run, entry, export_formats, load_source, main_for, store, trained
from oneneuron.frameworks import torch_jit_quiet
from oneneuron.manifest import KEEP_VERSIONS, Seal
from oneneuron.schema import ArtifactEntry

FORMAT = "torchscript"

if TYPE_CHECKING:  # imported where used: `--help` never loads torch
    import torch


def write_torchscript(model: torch.nn.Module, path: Path) -> None:
    """Script `model` and save it at `path`."""
    import torch

    # torch 2.13: "`torch.jit.script` is deprecated. Please switch to `torch.compile` or
    # `torch.export`." (same for jit.save). Targeted: other warnings still show.
    with torch_jit_quiet():
        scripted = torch.jit.script(model)
        buffer = io.BytesIO()
        torch.jit.save(scripted, buffer)
    # Serialised in memory, written by Python: on a full disk torch's own file writer aborts the
    # process (`terminate ... ios_failure`); Python raises an OSError the CLI reports in one line.
    path.write_bytes(buffer.getvalue())


def write(run: Run) -> list[ArtifactEntry]:
    """Store each torch model's TorchScript file; returns their manifest entries (uncommitted)."""
    import torch

    entries = []
    for model in trained(run, "torch"):
        source = load_source(run, model)
        name = f"{source.name}.torchscript.pt"
        stored = store(run, name, lambda p, s=source: write_torchscript(s.model, p))
        entries.append(entry(run, source, FORMAT, name, stored, producer={"torch": torch.__version__}))
    return entries


def export(
    artifacts: Path, keep_versions: int = KEEP_VERSIONS, seal: Seal | None = None
) -> list[ArtifactEntry]:
    """Write the TorchScript file and record it in the manifest; returns the manifest entries."""
    return export_formats(artifacts, [write], keep_versions, seal=seal)


def main() -> None:
    main_for(FORMAT, export)


if __name__ == "__main__":
    main()
