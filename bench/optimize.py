"""Row 9: what `export.optimize` buys at real width: int8 and fp16 variants vs their fp32 parent.

Two models built here with random weights (bench/real_width.py): a BERT-style encoder classifier
(hidden 768, 4 layers, 12 heads, vocabulary 30,522) and a ResNet-18-shaped CNN on 3x224x224. Both
come in through the toolkit's own path (export_byom, as `export.all --from-torch`) once into a
cache (bench/results/real_width, reused while the widths are the same), are copied into the run's
temporary directory and optimized there with `export.optimize` (in-process `optimize`): the BERT
with `--int8 dynamic` (onnxruntime's quantize_dynamic, as the issue measured), the ResNet with
`--int8 static --calibration` (CAL_ROWS seeded images), each judged on `--data` VAL_ROWS inputs
drawn with another seed (checked: none is a calibration row), and `--fp16` (judged on FP16_ROWS);
the budget is the row's target, `top1>=0.99` (the max relative error is reported beside it).

Rows, each with its target: int8 vs fp32 latency per call (the loader's `run` on the committed
`N.int8` vs on `N`, 1 onnxruntime thread, interleaved; each sample the mean of a block of calls)
at batch 1 and 8 (the BERT at sequence 32 and 64) <= 0.5x; file size <= 0.3x; top-1 agreement on
the VAL_ROWS inputs (export.optimize's figure, one row per call) >= 0.99, beside the number of
distinct classes the parent predicts on them (a random network's argmax may fall in a few classes);
fp16 file size <= 0.55x. A variant the budget refused is not committed: its latency is then timed
from its bytes in bare sessions and the subject says "refused". `--quick`: tiny widths, few rows.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from bench._core import ROOT, Row, interleave, load_average
from bench.real_width import Width, build, inputs

logger = logging.getLogger(__name__)
CACHE = ROOT / "bench/results/real_width"
TINY = Width(hidden=32, layers=2, heads=4, vocab=1000, scale=0.125, image=32)
VAL_ROWS, CAL_ROWS, FP16_ROWS = 1000, 64, 200
QUICK_VAL_ROWS, QUICK_CAL_ROWS = 50, 16
INT8 = {"bert": "int8-dynamic", "resnet": "int8-static"}
BUDGET = {"top1": 0.99}  # the row's target; rel is reported beside it (the default budget adds rel<=0.05)
# (batch, sequence) per latency row; the ResNet's sequence is None
SHAPES = {"bert": ((1, 32), (8, 32), (1, 64), (8, 64)), "resnet": ((1, None), (8, None))}


def label(name: str, w: Width) -> str:
    if name == "bert":
        return f"bert-{w.hidden}x{w.layers}"
    return f"resnet18{'' if w.scale == 1 else f'x{w.scale:g}'}-{w.image}px"


def held_out(name: str, w: Width, quick: bool, directory: Path) -> tuple[Path, Path]:
    """Calibration and validation .npz files (different seeds; no validation row is a calibration row)."""
    val = inputs(name, w, QUICK_VAL_ROWS if quick else VAL_ROWS, seed=1)
    cal = inputs(name, w, QUICK_CAL_ROWS if quick else CAL_ROWS, seed=2)
    key = next(iter(val))
    seen = {row.tobytes() for row in cal[key]}
    assert not any(row.tobytes() in seen for row in val[key]), "a validation row is a calibration row"
    paths = directory / f"{name}_cal.npz", directory / f"{name}_val.npz"
    np.savez(paths[0], **cal)
    np.savez(paths[1], **val)
    return paths


def sampler(fn: Callable[[], object], seconds: float) -> Callable[[], float]:
    """A sample: mean ms per call over a block of calls lasting about `seconds` (sized once)."""
    fn()
    start = time.perf_counter()
    fn()
    calls = max(1, round(seconds / max(time.perf_counter() - start, 1e-6)))

    def sample() -> float:
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        return (time.perf_counter() - start) / calls * 1000

    return sample


def runners(artifacts: Path, name: str, outcome) -> tuple[Callable, Callable, str]:
    """(variant run, parent run, how): the loader on both when the variant was committed, else bare
    sessions on the refused variant's bytes and the parent's file."""
    from export.variant_methods import session
    from serve import load

    trial = outcome.trials[0]
    if outcome.entry is not None:
        variant, parent = load(outcome.entry.model, artifacts), load(name, artifacts)
        return variant.run, parent.run, "loader run"
    bare_variant, bare_parent = session(trial.data), session((artifacts / outcome.parent.path).read_bytes())
    return (
        lambda feeds: bare_variant.run(None, feeds),
        lambda feeds: bare_parent.run(None, feeds),
        "bare session: not committed",
    )


def model_rows(artifacts: Path, name: str, w: Width, quick: bool, work: Path) -> list[Row]:
    """Optimize one model (int8, then fp16) and measure the rows of the module docstring."""
    from export.optimize import OptimizeConfig, optimize

    cal, val = held_out(name, w, quick, work)
    seconds, reps = (0.02, 3) if quick else (0.3, 7)
    cfg = OptimizeConfig(artifacts, name, (INT8[name],), BUDGET, cal, data=val, latency_seconds=seconds)
    logger.info("row 9: export.optimize %s %s, --data %s", name, INT8[name], val)
    int8 = optimize(cfg)
    trial = int8.trials[0]
    if trial.error is not None:
        raise RuntimeError(f"{name}: {trial.why}")
    half_cfg = OptimizeConfig(
        artifacts, name, ("fp16",), BUDGET, data=val, data_rows=FP16_ROWS, latency_seconds=seconds
    )
    fp16 = optimize(half_cfg)
    tag, status = label(name, w), "" if int8.entry is not None else " REFUSED"
    run_variant, run_parent, how = runners(artifacts, name, int8)
    rows = []
    for batch, seq in SHAPES[name]:
        feeds = inputs(name, w, batch, seed=3, seq=seq or 32)
        subject = sampler(lambda f=feeds: run_variant(f), seconds)
        s, b = interleave(subject, sampler(lambda f=feeds: run_parent(f), seconds), reps)
        where = f"b={batch}" + (f" s={seq}" if seq else "")
        rows.append(
            Row(
                f"9 optimize {tag} {where}",
                f"{trial.method} {trial.name}{status} ({how})",
                f"fp32 {name}",
                "ms",
                s,
                b,
                target="<= 0.5x",
                target_ratio=0.5,
                extra={"load_average": load_average()},
            )
        )
    mb = 1 / 2**20
    perf = trial.performance
    rows.append(
        Row(
            f"9 optimize {tag} size",
            f"{trial.method} {trial.name}{status}",
            f"fp32 {name}",
            "MiB",
            [perf["size"] * mb],
            [perf["parent_size"] * mb],
            target="<= 0.3x",
            target_ratio=0.3,
        )
    )
    classes = len(np.unique(next(iter(int8.parent_outputs["data"].values())).argmax(-1)))
    agree = trial.worst["data"]["top1"]
    rows.append(
        Row(
            f"9 optimize {tag} top-1",
            f"{trial.name}{status} argmax agreement, {int8.rows['data']} held-out rows "
            f"(parent: {classes} distinct classes; rel {trial.worst['data']['rel']:.3g})",
            f"fp32 {name} argmax",
            "fraction",
            [agree],
            [1.0],
            target=">= 0.99",
            target_ratio=0.99,
            higher_is_better=True,
            extra={"parent_distinct_classes": classes, "figures": trial.worst["data"]},
        )
    )
    half = fp16.trials[0]
    rows.append(
        Row(
            f"9 optimize {tag} fp16 size",
            f"fp16 {half.name}{'' if fp16.entry is not None else ' REFUSED'} (top-1 "
            f"{half.worst.get('data', {}).get('top1', float('nan')):.3f} on {fp16.rows['data']} rows)",
            f"fp32 {name}",
            "MiB",
            [half.performance.get("size", float("nan")) * mb],
            [half.performance.get("parent_size", float("nan")) * mb],
            target="<= 0.55x",
            target_ratio=0.55,
        )
    )
    return rows


def run(artifacts: Path, quick: bool = False) -> list[Row]:
    """Row 9 (module docstring); `artifacts` is the run's temporary directory (unused: own models)."""
    w = TINY if quick else Width()
    cache = artifacts.parent / "real_width" if quick else CACHE
    built = build(cache, w)
    work = artifacts.parent / "optimize"
    if work.exists():
        shutil.rmtree(work)
    shutil.copytree(built, work / "artifacts")  # variants are committed into the copy, not the cache
    rows = []
    for name in ("bert", "resnet"):
        rows += model_rows(work / "artifacts", name, w, quick, work)
    return rows
