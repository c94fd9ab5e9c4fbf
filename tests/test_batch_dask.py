"""`python -m serve.batch --scheduler`: a real Dask scheduler and two workers on 127.0.0.1.

The cluster is started by PID for the module and stopped afterwards; the job's output must
equal the local engine's, also when a worker is SIGKILLed mid-job.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bench._server import free_port, stop_all
from tests.batch_helpers import read_output
from tests.conftest import ROOT, run_cli

DASK = str(Path(sys.executable).parent / "dask")
CHUNKS = 48


def wait_for_workers(address: str, n: int, timeout: float = 40) -> None:
    from distributed import Client

    with Client(address, timeout=timeout) as client:
        client.wait_for_workers(n, timeout=timeout)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """(scheduler address, [worker Popen, worker Popen]); every process stopped by PID afterwards."""
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    logs = tmp_path_factory.mktemp("dask-logs")
    procs: list[subprocess.Popen] = []

    def start(name: str, *args: str) -> subprocess.Popen:
        with open(logs / f"{name}.log", "w") as log:  # the child keeps its own copy of the descriptor
            procs.append(subprocess.Popen([DASK, *args, "--host", "127.0.0.1", "--no-dashboard"], cwd=ROOT,
                                          env=env, stdout=subprocess.DEVNULL, stderr=log))  # fmt: skip
        return procs[-1]

    try:
        start("scheduler", "scheduler", "--port", str(port))
        for i in range(2):
            start(f"worker{i}", "worker", address, "--nworkers", "1", "--nthreads", "1", "--no-nanny")
        wait_for_workers(address, 2)
        yield address, procs[1:]
    finally:
        stop_all(procs, timeout=10)


@pytest.fixture(scope="module")
def job_input(exported_dir, tmp_path_factory):
    """Two Parquet files (48 parts of 2000 rows in all) and the local engine's output for them."""
    base = tmp_path_factory.mktemp("dask-input")
    rng = np.random.default_rng(3)
    for i, rows in enumerate((30_000, CHUNKS * 2000 - 30_000)):
        x = rng.uniform(-1000, 1000, rows).astype(np.float32)
        pq.write_table(pa.table({"id": np.arange(rows) + i * 30_000, "x": x}), base / f"in{i}.parquet",
                       row_group_size=5000)  # fmt: skip
    args = ("--quiet", "--model", "torch_linear", "--artifacts", str(exported_dir), "--input", str(base),
            "--batch-rows", "1000", "--part-rows", "2000")  # fmt: skip
    local = run_cli("-m", "serve.batch", *args, "--output", str(base / "_local"))
    assert local.returncode == 0, local.stderr
    return args, base / "_local"


def part_hashes(out: Path) -> dict[str, str]:
    return {p["part"]: p["sha256"] for p in json.loads((out / "_manifest.json").read_text())["parts"]}


def test_cluster_output_equals_local_output(cluster, job_input, tmp_path):
    address, _ = cluster
    args, local = job_input
    result = run_cli("-m", "serve.batch", *args, "--output", str(tmp_path / "out"), "--scheduler", address)
    assert result.returncode == 0, result.stderr
    # this cluster is plain TCP: the job says, in one line, what that allows
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning: --scheduler tcp://")]
    assert len(warnings) == 1 and "any local or network process that reaches it can run code" in warnings[0]
    assert read_output(tmp_path / "out").equals(read_output(local))
    assert part_hashes(tmp_path / "out") == part_hashes(local) and len(part_hashes(local)) == CHUNKS


def test_sigkilled_worker_mid_job_the_job_completes_exactly(cluster, job_input, tmp_path):
    address, workers = cluster
    args, local = job_input
    out = tmp_path / "out"
    job = subprocess.Popen([sys.executable, "-m", "serve.batch", *args, "--output", str(out), "--scheduler",
                            address], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    deadline = time.monotonic() + 60
    while not (out / "_parts").is_dir() or len(list((out / "_parts").glob("*.json"))) < 6:
        assert job.poll() is None and time.monotonic() < deadline, "the job ended before the kill point"
        time.sleep(0.005)
    workers[0].send_signal(signal.SIGKILL)
    workers[0].wait()
    assert not (out / "_manifest.json").exists()  # killed mid-job
    stdout, stderr = job.communicate(timeout=60)
    assert job.returncode == 0, stderr
    assert read_output(out).equals(read_output(local))
    assert part_hashes(out) == part_hashes(local)
