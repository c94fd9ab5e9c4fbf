"""The accuracy budget of a variant (export/optimize.py): what is measured against its fp32 parent,
and the limits it must stay within. `serve.check` re-measures with the same functions.

Figures, over a set of rows (the probe rows, or `--data VAL`), each the worst over the outputs:

- `abs`: max |variant - parent| over every element of every float output;
- `rel`: max over rows of max|variant - parent| / max|parent| within that row and output: relative
  to the row's largest value, so an element near zero does not make it infinite (an element-wise
  |a - b| / |b| is infinite for a logit of 0);
- `top1`: for class-score outputs (`class_outputs`), the fraction of rows whose argmax agrees;
- `topk`: the mean overlap of the k highest classes, k = min(5, K - 1) (1 when K = 2).

A budget is `metric>=value` or `metric<=value`, comma-separated: `top1>=0.99,rel<=0.05`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from oneneuron.errors import InputError
from oneneuron.schema import BUDGET_METRICS, Signature

DEFAULT_BUDGET = "top1>=0.99,rel<=0.05"
# A float output of rank 2 with K >= 2 classes, or any rank whose name says it holds class scores.
CLASS_NAMES = re.compile(r"prob|logit|score|class|label", re.IGNORECASE)
_LIMIT = re.compile(r"\s*(top1|topk|abs|rel)\s*(>=|<=)\s*([0-9.eE+-]+)\s*")


def parse_budget(text: str) -> dict[str, float]:
    """`top1>=0.99,rel<=0.05` -> {"top1": 0.99, "rel": 0.05}; InputError naming the bad part."""
    limits: dict[str, float] = {}
    example = f"e.g. --budget {DEFAULT_BUDGET},abs<=0.1"
    for part in text.split(","):
        m = _LIMIT.fullmatch(part)
        value = float(m.group(3)) if m and _is_float(m.group(3)) else math.nan
        if m is None or not math.isfinite(value) or value < 0:
            raise InputError(
                f"--budget {part.strip()[:40]!r}: expected METRIC>=VALUE or METRIC<=VALUE with METRIC one of "
                f"{', '.join(f'{k}{v}' for k, v in BUDGET_METRICS.items())} and a number >= 0; {example}"
            )
        metric, op = m.group(1), m.group(2)
        if op != BUDGET_METRICS[metric]:
            raise InputError(f"--budget {part.strip()!r}: {metric} takes {BUDGET_METRICS[metric]}; {example}")
        limits[metric] = value
    return limits


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def budget_text(limits: Mapping[str, float]) -> str:
    return ",".join(f"{k}{BUDGET_METRICS[k]}{v:g}" for k, v in limits.items())


def class_outputs(signature: Signature, chosen: Sequence[str] = ()) -> tuple[str, ...]:
    """The outputs compared as class scores: `chosen` (--class-output), else every float output whose
    last dimension is a static K >= 2 and that is rank 2 ([batch, K]) or named like class scores."""
    floats = {s.name: s for s in signature.outputs if s.dtype.startswith("float")}
    for name in chosen:
        spec = floats.get(name)
        if spec is None or len(spec.shape) < 2:
            raise InputError(
                f"--class-output {name!r}: not a float output of rank >= 2; the model's outputs are "
                f"{[(s.name, s.dtype, list(s.shape)) for s in signature.outputs]}"
            )
    if chosen:
        return tuple(chosen)
    return tuple(
        s.name
        for s in floats.values()
        if len(s.shape) >= 2
        and isinstance(s.shape[-1], int)
        and s.shape[-1] >= 2
        and (len(s.shape) == 2 or CLASS_NAMES.search(s.name))
    )


@dataclass(frozen=True)
class OutputFigures:
    """One output's figures on one set of rows (top1/topk None: not a class-score output)."""

    output: str
    abs: float
    rel: float
    top1: float | None = None
    topk: float | None = None
    k: int | None = None


def measure(
    variant: Mapping[str, np.ndarray], parent: Mapping[str, np.ndarray], classes: Sequence[str]
) -> list[OutputFigures]:
    """Per float output of `parent`: the figures of the module docstring (rows along axis 0)."""
    out = []
    for name, b in parent.items():
        if b.dtype.kind != "f":
            continue
        a, b = np.asarray(variant[name], dtype=np.float64), np.asarray(b, dtype=np.float64)
        diff = np.abs(a - b).reshape(len(b), -1)
        diff = np.where(np.isnan(diff), np.inf, diff)
        scale = np.abs(b).reshape(len(b), -1).max(axis=1, initial=0.0)
        worst = diff.max(axis=1, initial=0.0)
        rel = np.where(scale > 0, worst / np.where(scale > 0, scale, 1.0), np.where(worst > 0, np.inf, 0.0))
        fig = OutputFigures(name, float(worst.max(initial=0.0)), float(rel.max(initial=0.0)))
        if name in classes:
            top1, topk, k = _agreement(a, b)
            fig = OutputFigures(name, fig.abs, fig.rel, top1, topk, k)
        out.append(fig)
    return out


def _agreement(a: np.ndarray, b: np.ndarray) -> tuple[float, float, int]:
    """(top-1 agreement, mean top-k overlap, k) over the class axis (the last)."""
    classes = b.shape[-1]
    a2, b2 = a.reshape(-1, classes), b.reshape(-1, classes)
    top1 = float(np.mean(np.argmax(a2, axis=1) == np.argmax(b2, axis=1)))
    k = min(5, classes - 1) if classes > 2 else 1
    ta, tb = np.argsort(-a2, axis=1)[:, :k], np.argsort(-b2, axis=1)[:, :k]
    overlap = [len(set(x) & set(y)) / k for x, y in zip(ta.tolist(), tb.tolist(), strict=True)]
    return top1, float(np.mean(overlap)), k


def worst(figures: Sequence[OutputFigures], rows: int) -> dict[str, float]:
    """The budget figures of a set: the worst over its outputs, and how many rows it had."""
    out: dict[str, float] = {
        "abs": max((f.abs for f in figures), default=0.0),
        "rel": max((f.rel for f in figures), default=0.0),
    }
    tops = [f for f in figures if f.top1 is not None]
    if tops:
        out["top1"] = min(f.top1 for f in tops)
        out["topk"] = min(f.topk for f in tops)
    return {k: (v if math.isfinite(v) else 1e300) for k, v in out.items()} | {"rows": float(rows)}


@dataclass(frozen=True)
class Verdict:
    """One limit against one figure: `excess` is how far past the limit (> 0 fails)."""

    metric: str
    limit: float
    value: float | None  # None: not measured (no class-score output for top1/topk)

    @property
    def excess(self) -> float:
        if self.value is None:
            return 0.0
        return self.limit - self.value if BUDGET_METRICS[self.metric] == ">=" else self.value - self.limit

    @property
    def ok(self) -> bool:
        return self.excess <= 0

    def describe(self) -> str:
        op = BUDGET_METRICS[self.metric]
        if self.value is None:
            return f"{self.metric}{op}{self.limit:g}: not measured (no class-score output)"
        word = "ok" if self.ok else f"FAILED by {self.excess:.3g}"
        return f"{self.metric} {self.value:.4g} {op} {self.limit:g}: {word}"


def judge(limits: Mapping[str, float], figures: Mapping[str, float]) -> list[Verdict]:
    """Each limit against its figure."""
    return [Verdict(metric, limit, figures.get(metric)) for metric, limit in limits.items()]
