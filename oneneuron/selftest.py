"""The embedded self-test an exported ONNX file carries in its metadata, parsed and bounded.

Standard library only: the loader (which then runs it in onnxruntime) and `export.triton` (which
refuses to publish a file whose self-test is unusable) share these rules, and so does the
JavaScript side (serve/node/selftest.mjs); the bounds are the shared contract's (oneneuron/contract.py).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass

from oneneuron.contract import CONTRACT
from oneneuron.schema import SELFTEST_ATOL, SELFTEST_RTOL

MAX_SELFTEST_CHARS = CONTRACT.selftest["max_chars"]  # selftest_x in the ONNX metadata: never megabytes
MAX_SELFTEST_TOL = CONTRACT.selftest["max_tol"]  # a file claiming a looser self-test tolerance is refused


@dataclass(frozen=True)
class LinearSelfTest:
    """One input row and the source model's output there: |actual - y| <= atol + rtol·|y|."""

    x: tuple[float, ...]
    y: float
    atol: float
    rtol: float


def linear_selftest(metadata: Mapping[str, str], n_features: int) -> LinearSelfTest:
    """Parse `selftest_x`/`selftest_y`/`selftest_atol`/`selftest_rtol`; ValueError saying why not."""
    text = metadata.get("selftest_x")
    if text is None or "selftest_y" not in metadata:
        raise ValueError("selftest_x / selftest_y missing")
    if len(text) > MAX_SELFTEST_CHARS:
        raise ValueError(f"selftest_x is {len(text):,} characters, more than {MAX_SELFTEST_CHARS:,}")
    try:
        rows = json.loads(text)
        y = float(metadata["selftest_y"])
        atol = float(metadata.get("selftest_atol", SELFTEST_ATOL))
        rtol = float(metadata.get("selftest_rtol", SELFTEST_RTOL))
    except (ValueError, TypeError, RecursionError) as exc:
        raise ValueError(str(exc)[:120]) from None
    row = rows[0] if isinstance(rows, list) and len(rows) == 1 and isinstance(rows[0], list) else None
    if row is None or len(row) != n_features or not all(_finite(v) for v in row) or not math.isfinite(y):
        raise ValueError(
            f"selftest_x must be one row of {n_features} finite number(s) and selftest_y finite, "
            f"got {text[:80]} and {metadata['selftest_y'][:40]!r}"
        )
    if not (0 <= atol <= MAX_SELFTEST_TOL and 0 <= rtol <= MAX_SELFTEST_TOL):
        raise ValueError(f"tolerance {atol} + {rtol}·|y| is outside [0, {MAX_SELFTEST_TOL}]")
    return LinearSelfTest(tuple(float(v) for v in row), y, atol, rtol)


def _finite(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
