"""The one table of fix commands that error messages end with ("...; re-run python -m export.all")."""

from __future__ import annotations

from pathlib import Path

from oneneuron.contract import CONTRACT

# what failed -> the command that makes (or remakes) it; {dir} is the artifacts directory.
# The table is the shared contract's (serve/node/contract.json), so Node and the page end alike.
FIXES = CONTRACT.fixes


def fix(what: str, directory: Path | str | None = None) -> str:
    """The fix for `what` (a key of FIXES), naming the artifacts directory."""
    text = FIXES[what]
    return text.format(dir=directory) if directory is not None else text.replace(" --artifacts {dir}", "")
