"""The one tolerance rule for comparing a runtime's outputs with reference outputs (issue 20 item 3).

Per output and row: pass when |a - b| <= atol + rtol·max|b| for every element, max|b| the largest
finite |reference output| in that row (integer and bool outputs: equal, `EXACT`). serve/parity.py
(`python -m serve.check`) and export/from_onnx.py (adopting an ONNX file) both use it.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

# dtype -> (atol, rtol) when no flag names the output
DEFAULTS: Mapping[str, tuple[float, float]] = {
    "float16": (1e-3, 1e-3),
    "float32": (1e-5, 1e-5),
    "float64": (1e-7, 1e-7),
}
EXACT = (0.0, 0.0)  # integer and bool outputs


def default_for(dtype: str) -> tuple[float, float]:
    """(atol, rtol) for an output of `dtype` when nothing names it."""
    return DEFAULTS.get(dtype, EXACT)


def compare(
    actual: np.ndarray, expected: np.ndarray, atol: float, rtol: float, scale: np.ndarray | None = None
) -> tuple[float, float, float]:
    """(max |a - b|, max |a - b| / max|b| of its row, minimum passing atol at `rtol`); NaN == NaN.

    Row r's elements pass when |a - b| <= atol + rtol·max|b[r]| (max over the row's finite values).
    `scale`: per row, a known larger magnitude than max|b[r]| of the numbers the model adds up (the
    article's linear models with n > 1 features: |b| + Σ|x·w| + |bias|, whose sums can cancel;
    serve/check.py `magnitudes`); the rule is the same with it in place of max|b[r]|."""
    a, b = actual.astype(np.float64), expected.astype(np.float64)
    same = (a == b) | (np.isnan(a) & np.isnan(b))
    diff = np.where(same, 0.0, np.abs(a - b))
    diff = np.where(np.isnan(diff), np.inf, diff)
    rows = b.shape[0] if b.ndim else 1
    if scale is None:
        scale = np.where(np.isfinite(b), np.abs(b), 0.0).reshape(rows, -1).max(axis=1, initial=0.0)
    worst = diff.reshape(rows, -1).max(axis=1, initial=0.0)
    nonzero = scale > 0
    rel = float(np.max(worst[nonzero] / scale[nonzero])) if nonzero.any() else 0.0
    excess = diff.reshape(rows, -1) - rtol * scale[:, None]
    return float(worst.max(initial=0.0)), rel, max(0.0, float(np.max(excess, initial=0.0)))
