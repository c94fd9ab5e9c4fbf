"""The one table of fix commands that error messages end with ("...; re-run python -m export.all")."""

from __future__ import annotations

from pathlib import Path

# what failed -> the command that makes (or remakes) it; {dir} is the artifacts directory.
FIXES = {
    "train": "run python -m train.all --artifacts {dir}",
    "export": "re-run python -m export.all --artifacts {dir}",
    "onnx": "re-run python -m export.onnx --artifacts {dir}",
    "sign": "re-run python -m export.sign --artifacts {dir} --key PEM (or export.all --sign-key PEM)",
    "triton": "re-run python -m export.triton --artifacts {dir}",
    "npm": "run npm ci --ignore-scripts (make test and make web run it)",
    "journal": "inspect {dir}/.commit.json (a journal this toolkit did not write?) and delete it",
    "lock": "remove {dir}/.lock (it must be a regular file) and re-run",
}


def fix(what: str, directory: Path | str | None = None) -> str:
    """The fix for `what` (a key of FIXES), naming the artifacts directory."""
    text = FIXES[what]
    return text.format(dir=directory) if directory is not None else text.replace(" --artifacts {dir}", "")
