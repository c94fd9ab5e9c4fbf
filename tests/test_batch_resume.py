"""`serve.batch --resume` after a SIGKILL: every row exactly once, identical to an uninterrupted run."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tests.batch_helpers import read_output
from tests.conftest import ROOT, run_cli

CHUNKS = 40


def committed_parts(out) -> int:
    return len(list((out / "_parts").glob("*.json"))) if (out / "_parts").is_dir() else 0


def test_sigkill_at_a_random_point_then_resume(exported_dir, tmp_path):
    rows = CHUNKS * 5000 - 123
    x = np.random.default_rng(7).uniform(-1000, 1000, rows).astype(np.float32)
    pq.write_table(pa.table({"id": np.arange(rows), "x": x}), tmp_path / "in.parquet", row_group_size=3000)
    args = ["-m", "serve.batch", "--quiet", "--model", "torch_linear", "--artifacts", str(exported_dir),
            "--input", str(tmp_path / "in.parquet"), "--batch-rows", "1500", "--part-rows", "5000",
            "--threads", "1"]  # fmt: skip
    whole = run_cli(*args, "--output", str(tmp_path / "whole"))
    assert whole.returncode == 0, whole.stderr

    kill_after = random.Random(14).randrange(1, CHUNKS - 5)  # committed parts before the kill
    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, *args, "--output", str(out)], cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, stderr=subprocess.PIPE)  # fmt: skip
    deadline = time.monotonic() + 60
    while committed_parts(out) < kill_after:
        assert proc.poll() is None and time.monotonic() < deadline, "the job ended before the kill point"
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    committed = committed_parts(out)
    assert kill_after <= committed < CHUNKS and not (out / "_manifest.json").exists()

    refused = run_cli(*args, "--output", str(out))
    assert refused.returncode == 2 and "--resume" in refused.stderr
    resumed = run_cli(*args, "--output", str(out), "--resume")
    assert resumed.returncode == 0, resumed.stderr
    got, want = read_output(out), read_output(tmp_path / "whole")
    assert got["id"].to_pylist() == list(range(rows))  # every row exactly once, in order
    assert got.equals(want)
    names = sorted(p.name for p in out.glob("part-*"))
    assert names == sorted(p.name for p in (tmp_path / "whole").glob("part-*")) and len(names) == CHUNKS
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]
