"""The contract Python and JavaScript share, read once from serve/node/contract.json.

    from oneneuron.contract import CONTRACT
    CONTRACT.manifest["max_json_bytes"]  # 33554432

One data file holds the manifest limits and name pattern, the self-test bounds, the dtype table
and the fix commands; Python's constants (oneneuron/documents.py, oneneuron/fixes.py,
oneneuron/dtypes.py, the self-test modules) come from here, and Node and the page read the same
file (serve/node/contract.mjs). It lives inside serve/node/ because the npm package can ship only
files under its own directory (npm pack leaves symlinks out); it is package data of `serve`, so a
pip-installed copy finds it beside this package as a checkout does. Standard library only.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

PATH = Path(__file__).resolve().parents[1] / "serve" / "node" / "contract.json"


def _frozen(value: Any) -> Any:
    if isinstance(value, dict):
        return MappingProxyType({k: _frozen(v) for k, v in value.items()})
    if isinstance(value, list):
        return tuple(_frozen(v) for v in value)
    return value


@dataclass(frozen=True)
class Contract:
    """The parsed file, read-only: each section as a mapping (dtypes: a tuple of mappings)."""

    manifest: Mapping[str, Any]
    selftest: Mapping[str, Any]
    dtypes: tuple[Mapping[str, Any], ...]
    fixes: Mapping[str, str]

    @classmethod
    def load(cls, path: Path = PATH) -> Contract:
        """Read and check the file's shape; a broken checkout fails at import, naming the file."""
        try:
            doc = json.loads(Path(path).read_text(encoding="utf-8"))
            return cls(*(_frozen(doc[k]) for k in ("manifest", "selftest", "dtypes", "fixes")))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise RuntimeError(f"{path}: unreadable contract ({exc}); restore it from git") from None


CONTRACT = Contract.load()
