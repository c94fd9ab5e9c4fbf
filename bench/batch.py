"""Rows 7-8: batch scoring (`python -m serve.batch`), rows/s of whole processes.

Row 7: the local engine vs a bare pyarrow + onnxruntime loop doing the same reads, runs and
Parquet writes (no part manifests, fsync or hashes) on 20M rows of Parquet (`--quick`: 500k),
linear model. Row 8: Dask `--workers 2` vs `--workers 1`, and `--workers 1` vs local, on a
compute-heavy MLP (64 -> 1024 -> 1024 -> 1, ReLU; ~2.2 MFLOP per row) so compute dominates.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from onnx import TensorProto, helper, numpy_helper

from bench._core import Row, interleave, python, time_process
from core.fsio import Root
from core.manifest import onnx_entry, write_standalone
from core.schema import Signature, TensorSpec

ROWS, QUICK_ROWS = 20_000_000, 500_000
MLP_ROWS, QUICK_MLP_ROWS = 120_000, 12_000
BATCH_ROWS = 65536
WIDTH = 64

BARE_LOOP = """
import sys, os, onnxruntime as ort, pyarrow as pa, pyarrow.parquet as pq
src, out, model = sys.argv[1:4]
so = ort.SessionOptions(); so.intra_op_num_threads = 1; so.inter_op_num_threads = 1
s = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
os.makedirs(out)
pf = pq.ParquetFile(src, pre_buffer=False)
for i, b in enumerate(pf.iter_batches(batch_size={batch})):
    x = b.column("x").to_numpy().reshape(-1, 1)
    y = s.run(None, {{"x": x}})[0]
    t = pa.Table.from_batches([b]).append_column("y", pa.array(y[:, 0]))
    pq.write_table(t, f"{{out}}/part-{{i:07d}}.parquet", compression="snappy")
"""


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


def rows_per_s(rows: int, args: list[str], out: Path):
    def sample() -> float:
        shutil.rmtree(out, ignore_errors=True)
        return rows / time_process(args)

    return sample


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
    bare = rows_per_s(rows, python("-c", BARE_LOOP.format(batch=BATCH_ROWS), str(src), str(work / "bare"),
                                   str(model)), work / "bare")  # fmt: skip
    s7, b7 = interleave(ours, bare, reps, warmup=0 if quick else 1)

    mlp_rows = QUICK_MLP_ROWS if quick else MLP_ROWS
    art = mlp_dir(work / "mlp")
    feats = np.random.default_rng(1).standard_normal((mlp_rows, WIDTH)).astype(np.float32)
    pq.write_table(pa.table({f"x_{i}": feats[:, i] for i in range(WIDTH)}), work / "mlp.parquet")
    mlp = [*batch[:-4], "--batch-rows", "2000", "--model", "mlp", "--artifacts", str(art), "--input",
           str(work / "mlp.parquet"), "--keep", "x_0", "--output", str(work / "mlp-out")]  # fmt: skip
    one = rows_per_s(mlp_rows, python(*mlp, "--workers", "1"), work / "mlp-out")
    two = rows_per_s(mlp_rows, python(*mlp, "--workers", "2"), work / "mlp-out")
    local = rows_per_s(mlp_rows, python(*mlp), work / "mlp-out")
    s8, b8 = interleave(two, one, reps, warmup=0)
    s9, b9 = interleave(one, local, reps, warmup=0)
    return [
        Row("7 batch", f"python -m serve.batch local ({rows:,} rows Parquet -> Parquet)",
            "bare pyarrow + onnxruntime loop", "rows/s", s7, b7, target=">= 0.9x", target_ratio=0.9,
            higher_is_better=True),
        Row("8 batch dask", f"--workers 2 (MLP, {mlp_rows:,} rows)", "--workers 1", "rows/s", s8, b8,
            target=">= 1.5x", target_ratio=1.5, higher_is_better=True),
        Row("8 batch dask", f"--workers 1 (MLP, {mlp_rows:,} rows)", "local, --threads 1", "rows/s", s9, b9,
            higher_is_better=True),
    ]  # fmt: skip
