"""Export every format: `python -m export.all [--artifacts DIR] [--sign-key PEM]` (SavedModel,
TorchScript, ONNX); with `--sign-key`, sign the result (export/sign.py). With `--from-keras FILE` or
`--from-torch FILE` and `--name NAME`, export that model instead (export/byom.py); with `--from-onnx
FILE`, adopt that ONNX file as it is (export/from_onnx.py).

All formats are committed to the manifest together, in one rename: a server or an app reading
the directory sees the previous exports until the new ones replace them (README "Reliability").
Then a Triton repository that `python -m export.triton` made in ARTIFACTS/triton is refreshed (after
--from-keras/--from-torch too, which honour --keep-versions like every export).
"""

from __future__ import annotations

import importlib
from pathlib import Path

from export import FORMATS
from export._core import export_formats, main_for
from export.byom import add_options
from export.sign import sign_option
from export.triton import refresh
from oneneuron.manifest import KEEP_VERSIONS, Seal
from oneneuron.schema import ArtifactEntry


def export_all(
    artifacts: Path, keep_versions: int = KEEP_VERSIONS, seal: Seal | None = None
) -> list[ArtifactEntry]:
    """Run every registered exporter, commit all their entries at once (keeping `keep_versions` stored
    versions of each model; with `seal`, signed in the same commit), refresh ARTIFACTS/triton if
    export.triton made it; returns the entries."""
    entries = export_formats(
        artifacts, [importlib.import_module(m).write for m in FORMATS.values()], keep_versions, seal=seal
    )
    refresh(artifacts)
    return entries


def _options(p):
    """--from-keras/--from-torch/--from-onnx (export/byom.py), then --sign-key (export/sign.py)."""
    byom = add_options(p)
    sign = sign_option(p)

    def prepare(args):
        byom(args)
        return sign(args)

    return prepare


def main() -> None:
    main_for("all", export_all, options=_options)


if __name__ == "__main__":
    main()
