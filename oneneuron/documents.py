"""Reading the artifacts directory's JSON documents: bounded, parsed once, typed field access.

`open_document(dir, name, fix_key)` reads a file (size- and depth-bounded, a regular file only) and
checks its schema version; `Fields` gives typed access whose every failure is one `SchemaError`
naming the file, the field and the fix. The documents themselves are in oneneuron/schema.py
(`manifest.json`) and oneneuron/record.py (`training.json`); their shared constants are here.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from oneneuron.contract import CONTRACT
from oneneuron.dtypes import MANIFEST_DTYPES
from oneneuron.errors import MissingArtifactError, SchemaError
from oneneuron.fixes import fix

# The shared limits come from the contract Python and JavaScript both read (oneneuron/contract.py).
_M = CONTRACT.manifest
MANIFEST = _M["file"]
SIGNATURE = _M["signature_file"]  # the signature bundle beside the manifest (oneneuron/signing.py)
TRAINING_RECORD = _M["training_record"]
SCHEMA_VERSION = _M["schema_version"]
# A model or artifact name: starts with a letter or digit, then letters, digits, _ . - (<= 128 chars).
NAME_PATTERN = _M["name_pattern"]
_NAME = re.compile(NAME_PATTERN)
_SHA256 = re.compile(r"[0-9a-f]{64}")
DTYPES = MANIFEST_DTYPES  # oneneuron/dtypes.py: the contract's rows with "manifest": true
# format -> what its stored version is on disk (exportedprogram: a torch.export .pt2, --from-torch)
FORMATS: Mapping[str, str] = _M["formats"]
MAX_JSON_BYTES = _M["max_json_bytes"]  # a manifest or record larger than this is refused before parsing
MAX_DEPTH = _M["max_depth"]  # deeper JSON nesting than any file we write
MAX_STRING = _M["max_string"]
MAX_ITEMS = _M["max_items"]  # list lengths (probe rows, loss history, artifacts)
# The embedded self-test (ONNX metadata) and the check's same-model bound: |a - b| <= ATOL + RTOL·|b|.
SELFTEST_ATOL = CONTRACT.selftest["atol"]
SELFTEST_RTOL = CONTRACT.selftest["rtol"]

T = TypeVar("T")


def read_json(path: Path, what_fixes: str, data: bytes | None = None) -> Any:
    """Read a bounded, bounded-depth JSON document (or parse `data`, its bytes already read); any
    failure is one IntegrityError naming `path`."""
    from oneneuron.fsio import read_regular  # a regular file only, never a FIFO or a device

    if data is None:
        data = read_regular(path, MAX_JSON_BYTES, what_fixes)
    try:
        obj = json.loads(data)
    except RecursionError:
        raise SchemaError(f"{path}: JSON nested too deeply; {what_fixes}") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise SchemaError(f"{path}: not valid JSON ({str(exc)[:120]}); {what_fixes}") from None
    _check_depth(obj, path, what_fixes)
    return obj


def _check_depth(obj: Any, path: Path, what_fixes: str) -> None:
    stack = [(obj, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise SchemaError(f"{path}: JSON nested deeper than {MAX_DEPTH} levels; {what_fixes}")
        if isinstance(value, dict):
            stack.extend((v, depth + 1) for v in value.values())
        elif isinstance(value, list):
            stack.extend((v, depth + 1) for v in value)


def open_document(directory: Path, name: str, fix_key: str, data: bytes | None = None) -> Fields:
    """`directory/name` read (bounded; or `data`, its bytes already read), parsed and
    version-checked: the top-level `Fields`.

    A missing file is MissingArtifactError; anything else wrong is a SchemaError; both name the
    file and end with the command that writes it (`fix_key` in oneneuron.fixes).
    """
    path = Path(directory) / name
    what_fixes = fix(fix_key, directory)
    if data is None and not path.exists() and not path.is_symlink():
        raise MissingArtifactError(f"{path}: not found; {what_fixes}")
    f = Fields(read_json(path, what_fixes, data), path, "", what_fixes)
    version = f.int("schema_version", lo=0)
    if version != SCHEMA_VERSION:
        f.fail(
            f"schema version {version} is not {SCHEMA_VERSION} (written by another version of this toolkit)",
            "schema_version",
        )
    return f


class Fields:
    """Typed access to one JSON object, with errors naming the file and the field's path."""

    def __init__(self, obj: Any, file: Path, where: str, what_fixes: str):
        self.file, self.where, self.what_fixes = file, where, what_fixes
        if not isinstance(obj, dict):
            self.fail(f"expected a JSON object, got {_kind(obj)}")
        self.obj: dict[str, Any] = obj

    def fail(self, problem: str, key: str | None = None) -> None:
        where = f"{self.where}.{key}" if key and self.where else key or self.where or "top level"
        raise SchemaError(f"{self.file}: field {where}: {problem}; {self.what_fixes}")

    def has(self, key: str) -> bool:
        return key in self.obj and self.obj[key] is not None

    def _get(self, key: str, optional: bool) -> Any:
        if key not in self.obj or self.obj[key] is None:
            if optional:
                return None
            self.fail("missing", key)
        return self.obj[key]

    def sub(self, key: str) -> Fields:
        return Fields(self._get(key, False), self.file, self._path(key), self.what_fixes)

    def _path(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def str(self, key: str, optional: bool = False, pattern: re.Pattern | None = None) -> str | None:
        value = self._get(key, optional)
        if value is None:
            return None
        if not isinstance(value, str) or not value or len(value) > MAX_STRING:
            self.fail(
                f"expected a non-empty string of at most {MAX_STRING} characters, got {_kind(value)}", key
            )
        if pattern is not None and not pattern.fullmatch(value):
            self.fail(f"{value[:80]!r} does not match {pattern.pattern}", key)
        return value

    def name(self, key: str, optional: bool = False) -> str | None:
        value = self.str(key, optional)
        if value is not None:
            check_name(value, lambda problem: self.fail(problem, key))
        return value

    def sha256(self, key: str) -> str:
        return self.str(key, pattern=_SHA256)  # type: ignore[return-value]

    def int(self, key: str, optional: bool = False, lo: int = 0, hi: int = 1 << 53) -> int | None:
        value = self._get(key, optional)
        if value is None:
            return None
        if type(value) is not int or not lo <= value <= hi:
            self.fail(f"expected an integer in [{lo}, {hi}], got {preview(value)}", key)
        return value

    def num(self, key: str, optional: bool = False) -> float | None:
        value = self._get(key, optional)
        if value is None:
            return None
        return finite(value, lambda problem: self.fail(problem, key))

    def nums(self, key: str, optional: bool = False) -> tuple[float, ...] | None:
        value = self.list(key, optional)
        if value is None:
            return None
        return tuple(
            finite(v, lambda problem, i=i: self.fail(problem, f"{key}[{i}]")) for i, v in enumerate(value)
        )

    def rows(self, key: str) -> tuple[tuple[float, ...], ...]:
        rows = []
        for i, row in enumerate(self.list(key) or []):
            if not isinstance(row, list) or not row or len(row) > MAX_ITEMS:
                self.fail(f"expected a non-empty list of numbers, got {_kind(row)}", f"{key}[{i}]")
            rows.append(tuple(finite(v, lambda p, i=i: self.fail(p, f"{key}[{i}]")) for v in row))
        return tuple(rows)

    def list(self, key: str, optional: bool = False) -> list[Any] | None:
        value = self._get(key, optional)
        if value is None:
            return None
        if not isinstance(value, list) or len(value) > MAX_ITEMS:
            self.fail(f"expected a list of at most {MAX_ITEMS} items, got {_kind(value)}", key)
        return value

    def items(self, key: str, parse: Callable[[Fields], T], optional: bool = False) -> tuple[T, ...]:
        values = self.list(key, optional) or []
        return tuple(
            parse(Fields(v, self.file, f"{self._path(key)}[{i}]", self.what_fixes))
            for i, v in enumerate(values)
        )

    def strings(self, key: str, optional: bool = False) -> Mapping[str, str]:
        """A flat JSON object of short strings (versions, ONNX metadata)."""
        value = self._get(key, optional)
        if value is None:
            return {}
        if not isinstance(value, dict) or len(value) > 256:
            self.fail(f"expected an object of at most 256 strings, got {_kind(value)}", key)
        for k, v in value.items():
            if not isinstance(v, str) or len(k) > MAX_STRING or len(v) > 64 * MAX_STRING:
                self.fail(f"expected short strings, got {_kind(v)} for {k[:40]!r}", key)
        return dict(value)


def check_name(value: str, fail: Callable[[str], Any]) -> str:
    """Refuse a model or artifact name outside `NAME_PATTERN` (which also excludes '.', '..', '/')."""
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        fail(
            f"{str(value)[:80]!r} is not a valid name (expected {NAME_PATTERN}: a letter or digit, then "
            "letters, digits, '_', '.' or '-', at most 128 characters)"
        )
    return value


def finite(value: Any, fail: Callable[[str], Any]) -> float:
    """A finite real number (not a bool); `fail(problem)` otherwise."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        fail(f"expected a finite number, got {preview(value)}")
    return float(value)


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), preview(value)
    )


def preview(value: Any) -> str:
    """A short repr of a value from a document, for an error message."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
