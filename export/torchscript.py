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


def same_computation(run: Run, new: Path, old: Path) -> bool:
    """Whether two TorchScript files of one trained model give bitwise the same outputs on the probe
    rows. export._core.reuse_unchanged asks: torch.jit writes a module's constants in the order of a
    Python set (torch/jit/_recursive.py, `constants_set`), so its bytes depend on the process's
    string hash seed (PYTHONHASHSEED) and flip between two versions from run to run."""
    if run.record is None:  # a brought-in model: no probe rows of this shape (export/byom.py)
        return False
    import torch

    x = torch.from_numpy(run.probe)
    with torch_jit_quiet(), torch.no_grad():
        a, b = (torch.jit.load(str(p), map_location="cpu")(x).numpy() for p in (new, old))
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


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
