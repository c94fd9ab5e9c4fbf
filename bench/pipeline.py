"""Rows 1-2: training and the main job as whole processes vs the article's way of training.

Baseline: `bench/article_keras.py` (model.fit, 500 Python-level epochs) then
`bench/article_torch.py` (the 500-step loop), back to back. Subjects: `python -m train.all`
(row 1) and `python -m pipeline` (row 2: train + every export + check, what `make run` runs
after set-up).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from bench._core import ROOT, Row, python, time_process


def run(quick: bool = False, artifacts: Path | None = None) -> list[Row]:
    """Both rows; leaves a complete artifacts dir at `artifacts` for the later benchmarks."""
    epochs = "50" if quick else "500"
    reps, warmup = (1, 0) if quick else (3, 1)
    work = Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
    artifacts = artifacts or work / "artifacts"

    def baseline() -> float:
        return time_process(python(str(ROOT / "bench/article_keras.py"), epochs)) + time_process(
            python(str(ROOT / "bench/article_torch.py"), epochs)
        )

    def train() -> float:
        return time_process(python("-m", "train.all", "--artifacts", str(work / "train"), "--epochs", epochs))

    def main_job() -> float:
        shutil.rmtree(artifacts, ignore_errors=True)
        # --quick trains 50 epochs: Keras is then far from 19 and the check's analytic row
        # fails by design (exit 1); everything still runs end to end.
        return time_process(
            python("-m", "pipeline", "--artifacts", str(artifacts), "--epochs", epochs),
            ok_codes=(0, 1) if quick else (0,),
        )

    # one interleaved series: baseline, train.all, pipeline per repetition
    base, trains, mains = [], [], []
    for i in range(warmup + reps):
        b, t, m = baseline(), train(), main_job()
        if i >= warmup:
            base.append(b)
            trains.append(t)
            mains.append(m)
    shutil.rmtree(work / "train", ignore_errors=True)
    note = f"{epochs} epochs" + (" (--quick)" if quick else "")
    return [
        Row(
            "1 training",
            "python -m train.all",
            f"article_keras.py + article_torch.py ({note})",
            "s",
            trains,
            base,
            target="<= 0.25x",
            target_ratio=0.25,
        ),
        Row(
            "2 main job",
            "python -m pipeline (train+export+check)",
            f"same baseline ({note})",
            "s",
            mains,
            base,
            target="<= 0.5x",
            target_ratio=0.5,
        ),
    ]


def make_artifacts(artifacts: Path) -> None:
    """Artifacts for the other rows when rows 1-2 are not run (not timed)."""
    time_process(python("-m", "pipeline", "--artifacts", str(artifacts)))
