"""Shared benchmark plumbing: machine facts, interleaved timing, rows, the table."""

from __future__ import annotations

import contextlib
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Row:
    """One comparison: subject vs baseline, per-repetition values, and the target."""

    row: str
    subject: str
    baseline: str
    metric: str  # "s", "us/call", "ms", "req/s"
    subject_values: list[float]
    baseline_values: list[float]
    target: str = ""
    target_ratio: float | None = None  # met when ratio <= target_ratio (or >= for higher_is_better)
    higher_is_better: bool = False
    extra: dict = field(default_factory=dict)

    @property
    def subject_median(self) -> float:
        return statistics.median(self.subject_values)

    @property
    def baseline_median(self) -> float:
        return statistics.median(self.baseline_values)

    @property
    def ratio(self) -> float:
        return self.subject_median / self.baseline_median

    @property
    def met(self) -> bool | None:
        if self.target_ratio is None:
            return None
        ok = self.ratio >= self.target_ratio if self.higher_is_better else self.ratio <= self.target_ratio
        return ok and all(check() for check in self.extra.get("_checks", []))

    def to_json(self) -> dict:
        d = asdict(self)
        d["extra"] = {k: v for k, v in self.extra.items() if not k.startswith("_")}
        add_stats(d)
        d["ratio"] = self.ratio
        d["met"] = self.met
        return d


def add_stats(row: dict) -> dict:
    """Add subject/baseline min / median / max from their per-repetition values (kept if present)."""
    for name in ("subject", "baseline"):
        values = row[f"{name}_values"]
        row.setdefault(f"{name}_min", min(values))
        row.setdefault(f"{name}_median", statistics.median(values))
        row.setdefault(f"{name}_max", max(values))
    return row


def interleave(
    subject: Callable[[], float], baseline: Callable[[], float], reps: int, warmup: int = 1
) -> tuple[list[float], list[float]]:
    """Alternate baseline and subject `reps` times after `warmup` rounds; each call returns its measure."""
    for _ in range(warmup):
        baseline()
        subject()
    s, b = [], []
    for i in range(reps):
        # alternate which goes first so drift in machine load hits both alike
        if i % 2:
            s.append(subject())
            b.append(baseline())
        else:
            b.append(baseline())
            s.append(subject())
    return s, b


def time_process(args: list[str], env: dict | None = None, cwd: Path = ROOT, ok_codes=(0,)) -> float:
    """Wall seconds of one process, start to exit; raises when it exits with another code."""
    start = time.perf_counter()
    result = subprocess.run(
        args,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
        capture_output=True,
        text=True,
    )
    elapsed = time.perf_counter() - start
    if result.returncode not in ok_codes:
        raise RuntimeError(f"{' '.join(args)} exited {result.returncode}: {result.stderr[-2000:]}")
    return elapsed


def python(*args: str) -> list[str]:
    return [sys.executable, *args]


def machine() -> dict:
    """CPU model, cores and the library versions the figures depend on."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    for dist in (
        "numpy",
        "onnxruntime",
        "onnx",
        "tensorflow-cpu",
        "keras",
        "torch",
        "tf2onnx",
        "starlette",
        "uvicorn",
    ):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[dist] = metadata.version(dist)
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "load_average": load_average(),  # at the end of the run: other jobs sharing the machine
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": versions,
    }


def load_average() -> list[float]:
    """1-, 5- and 15-minute load averages (runnable processes; compare with the core count)."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return []


NOT_JUDGED = "quick: not judged"


def not_judged(rows: list[dict]) -> list[dict]:
    """`--quick` rows: shortened runs (50 epochs, fewer repetitions) are reported, never judged
    against targets set for the full run."""
    return [{**r, "met": None, "judged": False} for r in rows]


def format_table(rows: list[dict]) -> str:
    """The table `python -m bench` prints and the README shows (markdown); unjudged rows say so."""
    lines = [
        "| row | subject | baseline | metric | subject min / median / max | baseline min / median / max "
        "| ratio | target | met |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        fmt = _fmt(r["metric"])
        s = " / ".join(fmt(r[f"subject_{k}"]) for k in ("min", "median", "max"))
        b = " / ".join(fmt(r[f"baseline_{k}"]) for k in ("min", "median", "max"))
        met = NOT_JUDGED if r.get("judged") is False else {True: "yes", False: "**no**", None: "-"}[r["met"]]
        lines.append(
            f"| {r['row']} | {r['subject']} | {r['baseline']} | {r['metric']} | {s} | {b} | "
            f"{r['ratio']:.3f} | {r['target'] or '-'} | {met} |"
        )
    return "\n".join(lines)


def _fmt(metric: str) -> Callable[[float], str]:
    if metric in ("req/s", "rows/s"):
        return lambda v: f"{v:,.0f}"
    return lambda v: f"{v:.3g}"
