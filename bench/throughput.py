"""Row 5: throughput on 10 million rows, and peak memory.

The loader's `predict` vs numpy `x * w + b` vs a plain copy of the same bytes (the hardware
limit). Peak memory is measured in a fresh process (ru_maxrss growth during one predict)
against input + output bytes.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import numpy as np

from bench._core import ROOT, Row, interleave, python
from oneneuron.record import TrainingRecord
from serve import load

ROWS = 10_000_000
PEAK = """
import json, numpy as np
from serve import load

def kib(key):  # from /proc/self/status, e.g. "VmHWM:   81234 kB"
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(key + ":"))

m = load("torch_linear", {art!r}, threads={threads})
x = np.random.default_rng(0).random(({rows}, 1), dtype=np.float32)
x *= 2000
x -= 1000
m.predict(x[:1000])
with open("/proc/self/clear_refs", "w") as f:  # reset the peak (VmHWM) to the current RSS
    f.write("5")
before = kib("VmRSS")
y = m.predict(x)
print(json.dumps({{"grew_bytes": (kib("VmHWM") - before) * 1024, "input_bytes": x.nbytes,
                  "io_bytes": x.nbytes + y.nbytes}}))
"""


def timed(fn):
    def sample() -> float:
        start = time.perf_counter()
        fn()
        return (time.perf_counter() - start) * 1e3

    return sample


def peak_memory(artifacts: Path, rows: int, threads: int) -> dict:
    """Peak memory of one predict in a fresh process, as a multiple of input + output bytes.

    peak = input + the growth of VmHWM during predict (output + temporaries). Not ru_maxrss:
    Linux carries the parent's peak into a child across fork and exec, which hid the growth.
    """
    out = subprocess.run(
        python("-c", PEAK.format(art=str(artifacts), rows=rows, threads=threads)),
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    facts = json.loads(out.stdout)
    facts["peak_ratio"] = (facts["input_bytes"] + facts["grew_bytes"]) / facts["io_bytes"]
    return facts


def run(artifacts: Path, quick: bool = False) -> list[Row]:
    rows = 1_000_000 if quick else ROWS
    reps = 3 if quick else 9
    threads = 2
    model = load("torch_linear", artifacts, threads=threads)
    record = TrainingRecord.load(artifacts).models["torch_linear"]
    w, b = np.float32(record.weights[0]), np.float32(record.bias)
    x = np.random.default_rng(0).uniform(-1000, 1000, (rows, 1)).astype(np.float32)
    expected = x * w + b
    got = model.predict(x)
    ok = bool(np.all(np.abs(got - expected) <= 1e-5 + 1e-6 * np.abs(expected) + 2e-4))

    loader = timed(lambda: model.predict(x))
    numpy_fn = timed(lambda: x * w + b)
    copy = timed(lambda: x.copy())
    s1, b1 = interleave(loader, numpy_fn, reps)
    s2, b2 = interleave(loader, copy, reps)
    memory = peak_memory(artifacts, rows, threads)
    label = f"{rows:,} rows, threads={threads}"
    speed = Row(
        "5 throughput",
        f"loader predict ({label})",
        "numpy x*w+b",
        "ms",
        s1,
        b1,
        target="<= 1.0x; peak mem <= 2x (in+out)",
        target_ratio=1.0,
        extra={"outputs_within_tolerance": ok, **memory},
    )
    speed.extra["_checks"] = [lambda: ok, lambda: memory["peak_ratio"] <= 2.0]
    limit = Row(
        "5 throughput",
        f"loader predict ({label})",
        "memory copy of the input",
        "ms",
        s2,
        b2,
        target="<= 3x",
        target_ratio=3.0,
    )
    return [speed, limit]
