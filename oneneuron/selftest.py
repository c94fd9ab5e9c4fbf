"""The self-test an exported ONNX file carries in its metadata, parsed and bounded: one for every model.

ONNX metadata key `selftest` = JSON {"inputs": {name: rows}, "outputs": {name: rows}, "atol": float,
"rtol": float}: at most 65,536 characters, one or two rows, finite numbers (bools as true/false).
The model runs the inputs and every output listed must match within atol + rtol·|expected|
(serve/selftest.py runs it). Rows too large for metadata (a 224x224 image) are not embedded: key
`selftest_probe` names the model's probe file by sha256 (export/probe.py) and its first rows are
the test.

The article's models are one instance: input x [[10.0]], output y [[y(10)]] (`article_metadata`).
Files exported before the general key carry only `selftest_x` / `selftest_y` / `selftest_atol` /
`selftest_rtol`; they are read as that same document. New exports write both forms, because the
Node and browser loaders (serve/node/core.mjs) still read the old keys; when both are present they
must describe the same test, so a file cannot pass in Python and fail in JavaScript.

Standard library only: the loader (which runs the test in onnxruntime) and `export.triton` (which
refuses to publish a file whose self-test is unusable) share these rules.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from oneneuron.contract import CONTRACT
from oneneuron.schema import SELFTEST_ATOL, SELFTEST_RTOL

# The bounds are the shared contract's (oneneuron/contract.py): Node and the page apply the same.
KEY = CONTRACT.selftest["key"]
PROBE_KEY = CONTRACT.selftest["probe_key"]  # export/byom.py SELFTEST_PROBE
ARTICLE_KEYS = ("selftest_x", "selftest_y", "selftest_atol", "selftest_rtol")
MAX_SELFTEST_CHARS = CONTRACT.selftest["max_chars"]  # the JSON in the ONNX metadata: never megabytes
MAX_SELFTEST_TOL = CONTRACT.selftest["max_tol"]  # a file claiming a looser self-test tolerance is refused
MAX_ROWS = CONTRACT.selftest["max_rows"]


@dataclass(frozen=True)
class SelfTest:
    """Inputs to run and the outputs expected: |actual - expected| <= atol + rtol·|expected|."""

    inputs: Mapping[str, list]  # input name -> 1 to MAX_ROWS rows (nested lists)
    outputs: Mapping[str, list]  # output name -> rows of finite numbers
    atol: float
    rtol: float


def article_metadata(x: Sequence[float], y: float) -> dict[str, str]:
    """The article's self-test (one row `x` -> `y`) as ONNX metadata: the general `selftest` key and
    the keys the JavaScript loaders read (serve/node/core.mjs), describing the same test."""
    row = [float(v) for v in x]
    doc = {
        "inputs": {"x": [row]},
        "outputs": {"y": [[float(y)]]},
        "atol": SELFTEST_ATOL,
        "rtol": SELFTEST_RTOL,
    }
    return {
        KEY: json.dumps(doc),
        "selftest_x": json.dumps([row]),
        "selftest_y": repr(float(y)),
        "selftest_atol": repr(SELFTEST_ATOL),
        "selftest_rtol": repr(SELFTEST_RTOL),
    }


def embedded(metadata: Mapping[str, str], inputs: Sequence[str], outputs: Sequence[str]) -> SelfTest | None:
    """The self-test embedded in `metadata` for a model with these input and output names; None when
    there is none (a `selftest_probe` model, or none at all: `missing` says so). ValueError says why
    an embedded one is unusable."""
    general = _general(metadata[KEY], inputs, outputs) if KEY in metadata else None
    article = _article(metadata, inputs, outputs) if "selftest_x" in metadata else None
    if general is not None and article is not None and general != article:
        raise ValueError(
            f"'{KEY}' and 'selftest_x'/'selftest_y' describe different tests "
            f"({_short(metadata[KEY])} vs y = {metadata.get('selftest_y', '')[:40]!r})"
        )
    return general or article


def has_selftest(metadata: Mapping[str, str]) -> bool:
    """Whether `metadata` carries a self-test in any form (usable or not: running it says)."""
    return KEY in metadata or PROBE_KEY in metadata or "selftest_x" in metadata


def missing(inputs: Sequence[str]) -> str:
    """Why a model with neither an embedded self-test nor a probe has none."""
    return (
        f"no self-test: its ONNX metadata has no '{KEY}' (rows as JSON), no '{PROBE_KEY}' (a probe "
        f"file's sha256) and no 'selftest_x'/'selftest_y' (model inputs {list(inputs)})"
    )


def _general(text: str, inputs: Sequence[str], outputs: Sequence[str]) -> SelfTest:
    if len(text) > MAX_SELFTEST_CHARS:
        raise ValueError(f"'{KEY}' is {len(text):,} characters, more than {MAX_SELFTEST_CHARS:,}")
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise ValueError(f"'{KEY}' is not JSON: {str(exc)[:80]}") from None
    if (
        not isinstance(doc, dict)
        or not isinstance(doc.get("inputs"), dict)
        or not isinstance(doc.get("outputs"), dict)
    ):
        raise ValueError(
            f'\'{KEY}\': expected {{"inputs": {{name: rows}}, "outputs": {{name: rows}}, "atol", "rtol"}}'
        )
    if sorted(doc["inputs"]) != sorted(inputs):
        raise ValueError(f"'{KEY}' inputs {sorted(doc['inputs'])[:8]} are not the model's {list(inputs)}")
    if not doc["outputs"] or not set(doc["outputs"]) <= set(outputs):
        raise ValueError(
            f"'{KEY}' outputs {sorted(doc['outputs'])[:8]} are not among the model's {sorted(outputs)}"
        )
    atol, rtol = doc.get("atol"), doc.get("rtol")
    for tol in (atol, rtol):
        if type(tol) not in (int, float) or not 0 <= tol <= MAX_SELFTEST_TOL:
            raise ValueError(f"tolerance {atol!r} + {rtol!r}·|y| is outside [0, {MAX_SELFTEST_TOL}]")
    for name, rows in doc["inputs"].items():
        if not isinstance(rows, list) or not 1 <= len(rows) <= MAX_ROWS:
            raise ValueError(f"'{KEY}' input {name!r} must be a list of 1 to {MAX_ROWS} rows")
    for name, rows in doc["outputs"].items():
        if not isinstance(rows, list) or not 1 <= len(rows) <= MAX_ROWS or not _all_finite(rows):
            raise ValueError(f"'{KEY}' output {name!r} must be {MAX_ROWS} row(s) at most of finite numbers")
    return SelfTest(doc["inputs"], doc["outputs"], float(atol), float(rtol))


def _article(metadata: Mapping[str, str], inputs: Sequence[str], outputs: Sequence[str]) -> SelfTest:
    """`selftest_x` / `selftest_y` (/ `selftest_atol` / `selftest_rtol`): one input row, one output."""
    text = metadata["selftest_x"]
    if "selftest_y" not in metadata:
        raise ValueError("selftest_x / selftest_y missing")
    if len(text) > MAX_SELFTEST_CHARS:
        raise ValueError(f"selftest_x is {len(text):,} characters, more than {MAX_SELFTEST_CHARS:,}")
    if len(inputs) != 1 or len(outputs) != 1:
        raise ValueError(
            f"selftest_x / selftest_y test one input and one output; the model has {list(inputs)}"
        )
    try:
        rows = json.loads(text)
        y = float(metadata["selftest_y"])
        atol = float(metadata.get("selftest_atol", SELFTEST_ATOL))
        rtol = float(metadata.get("selftest_rtol", SELFTEST_RTOL))
    except (ValueError, TypeError, RecursionError) as exc:
        raise ValueError(str(exc)[:120]) from None
    one_row = isinstance(rows, list) and len(rows) == 1 and isinstance(rows[0], list) and rows[0]
    if not one_row or not _all_finite(rows) or not math.isfinite(y):
        raise ValueError(
            f"selftest_x must be one row of finite numbers and selftest_y finite, "
            f"got {text[:80]} and {metadata['selftest_y'][:40]!r}"
        )
    if not (0 <= atol <= MAX_SELFTEST_TOL and 0 <= rtol <= MAX_SELFTEST_TOL):
        raise ValueError(f"tolerance {atol} + {rtol}·|y| is outside [0, {MAX_SELFTEST_TOL}]")
    return SelfTest({inputs[0]: [[float(v) for v in rows[0]]]}, {outputs[0]: [[y]]}, atol, rtol)


def _all_finite(rows: Any) -> bool:
    """Nested lists of finite numbers (bools count as 0/1), at least one."""
    if isinstance(rows, list):
        return bool(rows) and all(_all_finite(r) for r in rows)
    return isinstance(rows, int | float) and math.isfinite(rows)


def _short(text: str) -> str:
    return text if len(text) <= 80 else text[:77] + "..."
