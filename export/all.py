"""Export every format: `python -m export.all [--artifacts DIR] [--sign-key PEM]` (SavedModel, TorchScript,
ONNX); with `--sign-key`, sign the result (export/sign.py)."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from export import FORMATS
from export._core import main_for
from export.sign import sign_after


def export_all(artifacts: Path) -> list[dict[str, Any]]:
    """Run every registered exporter in turn; returns all manifest entries written."""
    entries = []
    for module in FORMATS.values():
        entries += importlib.import_module(module).export(artifacts)
    return entries


def main() -> None:
    main_for("all", export_all, options=sign_after)


if __name__ == "__main__":
    main()
