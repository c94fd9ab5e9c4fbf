"""Rows 7-8: batch scoring (`python -m serve.batch`), rows/s of whole processes.

Row 7: the local engine vs a bare pyarrow + onnxruntime loop doing the same reads, runs and
Parquet writes (byte-identical parts, checked; no part manifests, hashes or fsync) on 20M rows
of Parquet (`--quick`: 500k), linear model. Row 8: `--scheduler` on a running cluster of 2
one-thread workers vs 1 (scheduler and workers started before the timed region, as a user's
cluster would be), and 1 worker vs local, on a compute-heavy MLP (64 -> 1024 -> 1024 -> 1,
ReLU; ~2.2 MFLOP per row) in equal parts so compute dominates and both workers get equal work
(the rows each worker scored are reported); and, as the ceiling the machine allows at that
moment, the same MLP in 2 concurrent bare onnxruntime processes vs 1.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from onnx import TensorProto, helper, numpy_helper

from bench._core import ROOT, Row, interleave, python
from bench._server import stop_all
from oneneuron.fsio import Root
from oneneuron.manifest import onnx_entry, write_standalone
from oneneuron.schema import Signature, TensorSpec
from serve.batch.job import PART_ROWS

ROWS, QUICK_ROWS = 20_000_000, 500_000
MLP_ROWS, QUICK_MLP_ROWS = 480_000, 12_000
MLP_TASKS = 24  # equal parts: 12 per worker of 2, so neither waits long for the other at the end
MLP_BATCH = 2000
BATCH_ROWS = 65536
WIDTH = 64

# The same reads, runs and output files as `python -m serve.batch` with its defaults: parts of
# PART_ROWS rows named as it names them, one snappy row group per batch. It skips what the
# product adds: hashing, part manifests, the final manifest, resume checks and the fsyncs.
BARE_LOOP = """
import sys, os, onnxruntime as ort, pyarrow as pa, pyarrow.parquet as pq
src, out, model = sys.argv[1:4]
so = ort.SessionOptions(); so.intra_op_num_threads = 1; so.inter_op_num_threads = 1
s = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
os.makedirs(out)
pf = pq.ParquetFile(src, pre_buffer=False)
writer, rows = None, 0
for b in pf.iter_batches(batch_size={batch}):
    x = b.column("x").to_numpy().reshape(-1, 1)
    y = s.run(None, {{"x": x}})[0]
    t = pa.Table.from_batches([b]).append_column("y", pa.array(y[:, 0]))
    if rows % {part} == 0:
        writer and writer.close()
        name = f"{{out}}/part-00000-{{rows // {part}:07d}}.parquet"
        writer = pq.ParquetWriter(name, t.schema, compression="snappy")
    writer.write_table(t)
    rows += b.num_rows
writer.close()
"""


# The machine's own scaling ceiling for row 8: the same MLP in 1 vs 2 concurrent bare onnxruntime
# processes (no Dask, no I/O), each scoring its share of the rows in batches of MLP_BATCH rows.
BARE_MLP = """
import sys, numpy as np, onnxruntime as ort
so = ort.SessionOptions(); so.intra_op_num_threads = 1; so.inter_op_num_threads = 1
s = ort.InferenceSession(sys.argv[1], so, providers=["CPUExecutionProvider"])
x = np.random.default_rng(0).standard_normal(({batch}, {width})).astype(np.float32)
for _ in range(int(sys.argv[2]) // {batch}):
    s.run(None, {{"x": x}})
"""


def concurrent_rows_per_s(rows: int, procs: int, model: Path):
    """rows/s of `procs` bare processes started together, each scoring rows / procs rows."""
    code = BARE_MLP.format(batch=MLP_BATCH, width=WIDTH)

    def sample() -> float:
        start = time.perf_counter()
        running = [subprocess.Popen(python("-c", code, str(model), str(rows // procs))) for _ in range(procs)]
        if any(p.wait() != 0 for p in running):
            raise RuntimeError("a bare MLP process failed")
        return rows / (time.perf_counter() - start)

    return sample


def mlp_dir(directory: Path) -> Path:
    """An artifacts directory with `mlp` (one float32 input [batch, 64], self-test metadata)."""
    rng = np.random.default_rng(0)
    dims = [WIDTH, 1024, 1024, 1]
    nodes, inits, prev = [], [], "x"
    for i, (a, b) in enumerate(zip(dims, dims[1:], strict=False)):
        w = (rng.standard_normal((a, b)) / np.sqrt(a)).astype(np.float32)
        inits += [
            numpy_helper.from_array(w, f"w{i}"),
            numpy_helper.from_array(np.zeros(b, np.float32), f"b{i}"),
        ]
        nodes.append(helper.make_node("Gemm", [prev, f"w{i}", f"b{i}"], [f"h{i}"]))
        prev = f"h{i}"
        if i < len(dims) - 2:
            nodes.append(helper.make_node("Relu", [prev], [f"r{i}"]))
            prev = f"r{i}"
    nodes.append(helper.make_node("Identity", [prev], ["y"]))
    graph = helper.make_graph(
        nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", WIDTH])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 1])], initializer=inits,
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    import onnxruntime as ort

    x10 = np.full((1, WIDTH), 10.0, np.float32)
    y10 = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x10})[0]
    helper.set_model_props(model, {"model": "mlp", "selftest_x": json.dumps(x10.tolist()),
                                   "selftest_y": repr(float(y10[0, 0]))})  # fmt: skip
    data = model.SerializeToString()
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "mlp.onnx").write_bytes(data)
    signature = Signature(
        (TensorSpec("x", "float32", ("batch", WIDTH)),), (TensorSpec("y", "float32", ("batch", 1)),)
    )
    root = Root(directory)
    write_standalone(root, [onnx_entry(root, "mlp.onnx", "mlp", signature)])
    return directory


def timed(args: list[str], out: Path) -> tuple[float, str]:
    """Wall seconds of one process (its --output removed first) and its stdout."""
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    result = subprocess.run(args, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True,
                            text=True)  # fmt: skip
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} exited {result.returncode}: {result.stderr[-2000:]}")
    return elapsed, result.stdout


def rows_per_s(rows: int, args: list[str], out: Path, stdout: list[str] | None = None):
    def sample() -> float:
        seconds, text = timed(args, out)
        if stdout is not None:
            stdout.append(text)
        return rows / seconds

    return sample


@contextlib.contextmanager
def dask_cluster(workers: int, logs: Path) -> Iterator[str]:
    """A scheduler and `workers` one-thread workers on 127.0.0.1, started (and stopped, by PID) outside
    the timed region, as a user's running cluster would be; yields the scheduler address."""
    from distributed import Client

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    address, procs = f"tcp://127.0.0.1:{port}", []
    dask = str(Path(sys.executable).parent / "dask")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    logs.mkdir(parents=True, exist_ok=True)
    try:
        for name, args in [("scheduler", ["scheduler", "--port", str(port)])] + [
            (f"worker{i}", ["worker", address, "--nworkers", "1", "--nthreads", "1", "--no-nanny"])
            for i in range(workers)
        ]:
            with open(logs / f"{name}-{port}.log", "w") as log:
                cmd = [dask, *args, "--host", "127.0.0.1", "--no-dashboard"]
                procs.append(subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=log))
        with Client(address, timeout=60) as client:
            client.wait_for_workers(workers, timeout=60)
        yield address
    finally:
        stop_all(procs, timeout=15)


def same_parts(ours: Path, bare: Path) -> bool:
    """The bare loop wrote byte-identical parts (the comparison is of the same output)."""
    final = json.loads((ours / "_manifest.json").read_text())
    theirs = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in bare.glob("part-*")}
    return theirs == {p["part"]: p["sha256"] for p in final["parts"]}


def worker_shares(stdout: list[str]) -> list[float]:
    """Each worker's share of the rows in the last 2-worker run ("rows per dask worker: A: n, B: m")."""
    line = next(x for x in reversed(stdout[-1].splitlines()) if x.startswith("rows per dask worker:"))
    counts = [int(c.replace(",", "")) for c in re.findall(r": ([\d,]+)(?:,|$)", line.split(":", 1)[1])]
    return sorted(round(c / sum(counts), 3) for c in counts)


def run(artifacts: Path, quick: bool = False) -> list[Row]:
    work = artifacts.parent / "batch-bench"
    work.mkdir(exist_ok=True)
    rows = QUICK_ROWS if quick else ROWS
    reps = 1 if quick else 3
    x = np.random.default_rng(0).uniform(-1000, 1000, rows).astype(np.float32)
    src = work / "linear.parquet"
    pq.write_table(pa.table({"x": x}), src, row_group_size=BATCH_ROWS)
    del x
    model = next(artifacts.glob("torch_linear.*.onnx"))
    batch = ["-m", "serve.batch", "--quiet", "--batch-rows", str(BATCH_ROWS), "--threads", "1"]
    linear = ["--model", "torch_linear", "--artifacts", str(artifacts), "--input", str(src)]
    ours = rows_per_s(rows, python(*batch, *linear, "--output", str(work / "ours")), work / "ours")
    bare = rows_per_s(rows, python("-c", BARE_LOOP.format(batch=BATCH_ROWS, part=PART_ROWS), str(src),
                                   str(work / "bare"), str(model)), work / "bare")  # fmt: skip
    s7, b7 = interleave(ours, bare, reps, warmup=0 if quick else 1)
    same = same_parts(work / "ours", work / "bare")

    mlp_rows = QUICK_MLP_ROWS if quick else MLP_ROWS
    art = mlp_dir(work / "mlp")
    feats = np.random.default_rng(1).standard_normal((mlp_rows, WIDTH)).astype(np.float32)
    table = pa.table({f"x_{i}": feats[:, i] for i in range(WIDTH)})
    # one row group per part: a task decodes only its own rows (README "Batch scoring", On a cluster)
    pq.write_table(table, work / "mlp.parquet", row_group_size=mlp_rows // MLP_TASKS)
    mlp = [*batch[:-4], "--batch-rows", str(MLP_BATCH), "--part-rows", str(mlp_rows // MLP_TASKS), "--model",
           "mlp", "--artifacts", str(art), "--input", str(work / "mlp.parquet"), "--keep", "x_0", "--output",
           str(work / "mlp-out")]  # fmt: skip
    with dask_cluster(1, work / "logs") as one_address, dask_cluster(2, work / "logs") as two_address:
        printed: list[str] = []
        one = rows_per_s(mlp_rows, python(*mlp, "--scheduler", one_address), work / "mlp-out")
        two = rows_per_s(mlp_rows, python(*mlp, "--scheduler", two_address), work / "mlp-out", printed)
        local = rows_per_s(mlp_rows, python(*mlp), work / "mlp-out")
        s8, b8 = interleave(two, one, reps, warmup=0 if quick else 1)  # warm-up: each worker's session
        s9, b9 = interleave(one, local, reps, warmup=0)
    bare_two = concurrent_rows_per_s(mlp_rows, 2, art / "mlp.onnx")
    s10, b10 = interleave(bare_two, concurrent_rows_per_s(mlp_rows, 1, art / "mlp.onnx"), reps, warmup=0)
    shares = worker_shares(printed)
    seven = Row("7 batch", f"python -m serve.batch local ({rows:,} rows Parquet -> Parquet, "
                f"{PART_ROWS:,}-row parts, fsynced)", "bare pyarrow + onnxruntime loop, same parts "
                "(no fsync)", "rows/s", s7, b7, target=">= 0.9x", target_ratio=0.9, higher_is_better=True,
                extra={"byte_identical_output": same})  # fmt: skip
    seven.extra["_checks"] = [lambda: same]
    eight = Row("8 batch dask", f"2 workers (MLP, {mlp_rows:,} rows, {MLP_TASKS} tasks)", "1 worker",
                "rows/s", s8, b8, target=">= 1.5x", target_ratio=1.5, higher_is_better=True,
                extra={"row_share_per_worker": shares})  # fmt: skip
    return [
        seven,
        eight,
        Row("8 batch dask", f"1 worker (MLP, {mlp_rows:,} rows)", "local, --threads 1", "rows/s", s9, b9,
            higher_is_better=True),
        Row("8 machine", "2 concurrent bare onnxruntime processes (the same MLP, no Dask, no I/O)",
            "1 bare process", "rows/s", s10, b10, higher_is_better=True),
    ]  # fmt: skip
