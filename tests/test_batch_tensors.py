"""`python -m serve.batch` on tensors of any rank (issue 20 item 5), with the suite's real architectures:
CNN images from Parquet fixed-size-list and nested-list columns, transformer token sequences of two
lengths (grouped by length), the self-test of every model before any row, one local and one small
Dask run, and bad cells named by file, row and column."""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import onnx
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from serve import load
from tests import architectures
from tests.batch_helpers import read_output
from tests.conftest import run_cli


def batch(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return run_cli("-m", "serve.batch", "--quiet", *args, timeout=timeout)


@pytest.fixture(scope="module")
def artifacts(architectures_dir):
    return architectures_dir / "artifacts"


def images(rows: int = 3) -> np.ndarray:
    return architectures.inputs("cnn", rows=rows)["image"]


def nested(x: np.ndarray, depth: int, leaf=pa.float32()) -> pa.Array:
    kind = leaf
    for _ in range(depth):
        kind = pa.list_(kind)
    return pa.array([r.tolist() if isinstance(r, np.ndarray) else r for r in x], kind)


def sequences() -> tuple[pa.Table, list[np.ndarray]]:
    """Five rows of token ids and masks, lengths 5 and 9 interleaved; and the row groups by length."""
    short = architectures.inputs("transformer", rows=3, seq=5)
    long = architectures.inputs("transformer", rows=2, seq=9, seed=2)
    order = [("s", 0), ("l", 0), ("s", 1), ("s", 2), ("l", 1)]
    pick = {"s": short, "l": long}
    table = pa.table(
        {
            "id": np.arange(len(order)),
            "input_ids": nested([pick[k]["input_ids"][i] for k, i in order], 1, pa.int64()),
            "attention_mask": nested([pick[k]["attention_mask"][i] for k, i in order], 1, pa.int64()),
        }
    )
    return table, [np.array([0, 2, 3]), np.array([1, 4])]


def expected_by_group(model, table: pa.Table, groups: list[np.ndarray]) -> np.ndarray:
    """`load(...).run` on each group of equal length, put back in row order."""
    out = np.zeros((table.num_rows, architectures.CLASSES), np.float32)
    for rows in groups:
        feeds = {
            c: np.array([table[c][int(r)].as_py() for r in rows]) for c in ("input_ids", "attention_mask")
        }
        out[rows] = model.run(feeds)["output"]
    return out


def as_array(column: pa.ChunkedArray, dtype=np.float32) -> np.ndarray:
    return np.asarray(column.to_pylist(), dtype=dtype)


def test_cnn_images_from_a_fixed_size_list_column_and_from_nested_lists(artifacts, tmp_path):
    """A flattened fixed_size_list<27648> (zero-copy reshape) and list<list<list<float>>> both score the
    3x96x96 CNN, after its probe-file self-test; outputs equal the loader's on the same rows."""
    x = images()
    want = load("cnn", artifacts).run({"image": x})["output"]
    flat = pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), x[0].size)
    for name, column in (("flat", flat), ("nested", nested(x, 3))):
        pq.write_table(pa.table({"id": np.arange(len(x)), "image": column}), tmp_path / f"{name}.parquet")
        out = tmp_path / f"out-{name}"
        result = batch("--model", "cnn", "--artifacts", str(artifacts), "--input",
                       str(tmp_path / f"{name}.parquet"), "--output", str(out), "--keep", "id")  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert result.stderr == "" and "scored 3 of 3 rows" in result.stdout
        table = read_output(out)
        assert table.column_names == ["id", "output"] and table["id"].to_pylist() == [0, 1, 2]
        assert table.schema.field("output").type == pa.list_(pa.float32(), 5)
        assert np.array_equal(as_array(table["output"]), want)


def test_transformer_sequences_of_two_lengths_are_grouped_in_input_order(artifacts, tmp_path):
    """Token sequences of lengths 5 and 9, interleaved, from Parquet list columns and from CSV JSON text:
    each length runs as one batch, the outputs come back in input order, equal to the loader's."""
    table, groups = sequences()
    want = expected_by_group(load("transformer", artifacts), table, groups)
    pq.write_table(table, tmp_path / "seq.parquet")
    as_text = {c: [json.dumps(v) for v in table[c].to_pylist()] for c in ("input_ids", "attention_mask")}
    pacsv.write_csv(pa.table({"id": table["id"], **as_text}), tmp_path / "seq.csv")
    for source, fmt in (("seq.parquet", "parquet"), ("seq.csv", "csv")):
        out = tmp_path / f"out-{source}"
        args = ("--model", "transformer", "--artifacts", str(artifacts), "--keep", "id", "--format", fmt)
        result = batch(*args, "--input", str(tmp_path / source), "--output", str(out))
        assert result.returncode == 0, result.stderr
        got = read_output(out)
        assert got["id"].to_pylist() == list(range(5))
        if fmt == "parquet":
            assert np.array_equal(as_array(got["output"]), want)
        else:  # CSV: one column per value of a [rows, 3] output, as for any model
            values = np.stack([got[f"output_{i}"].to_numpy() for i in range(3)], axis=1).astype(np.float32)
            assert np.array_equal(values, want)


def test_a_small_dask_run_self_tests_on_the_probe_rows_and_equals_local(artifacts, tmp_path):
    """--workers 2: the CNN's self-test rows come from its probe file, which workers cannot read:
    the job hands them over; each worker self-tests and the parts equal the local run's."""
    x = images(4)
    pq.write_table(pa.table({"image": nested(x, 3)}), tmp_path / "in.parquet", row_group_size=2)
    common = ("--model", "cnn", "--artifacts", str(artifacts), "--input", str(tmp_path / "in.parquet"),
              "--part-rows", "2")  # fmt: skip
    local = batch(*common, "--output", str(tmp_path / "local"))
    dask = batch(*common, "--output", str(tmp_path / "dask"), "--workers", "2", timeout=240)
    assert local.returncode == 0 and dask.returncode == 0, (local.stderr, dask.stderr)
    assert "rows per dask worker" in dask.stdout
    for part in ("part-00000-0000000.parquet", "part-00000-0000001.parquet"):
        assert (tmp_path / "dask" / part).read_bytes() == (tmp_path / "local" / part).read_bytes()
    want = load("cnn", artifacts).run({"image": x})["output"]
    assert np.array_equal(as_array(read_output(tmp_path / "dask")["output"]), want)


def test_every_model_runs_its_self_test_before_any_row(artifacts, tmp_path):
    """A CNN whose probe file changed and a transformer (two inputs) whose embedded self-test is wrong
    are refused (exit 1) before anything is scored; so is a model without a self-test."""
    copy = tmp_path / "artifacts"
    shutil.copytree(artifacts, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    cnn = next(e for e in manifest["artifacts"] if e["model"] == "cnn" and e["format"] == "onnx")
    probe = copy / cnn["probe"]["path"]
    damaged = bytearray(probe.read_bytes())
    damaged[-30] ^= 1
    probe.unlink()
    probe.write_bytes(bytes(damaged))
    pq.write_table(pa.table({"image": nested(images(1), 3)}), tmp_path / "img.parquet")
    result = batch("--model", "cnn", "--artifacts", str(copy), "--input", str(tmp_path / "img.parquet"),
                   "--output", str(tmp_path / "a"))  # fmt: skip
    assert result.returncode == 1 and "sha256 differs from the model's 'selftest_probe'" in result.stderr
    assert not list((tmp_path / "a").glob("part-*"))

    proto = onnx.load(copy / "transformer.onnx")
    meta = {p.key: p.value for p in proto.metadata_props}
    selftest = json.loads(meta["selftest"])
    selftest["outputs"]["output"][0][0] += 1.0
    lone = tmp_path / "lone"
    lone.mkdir()
    for name, props in (("wrong", {**meta, "selftest": json.dumps(selftest)}), ("none", {"model": "none"})):
        del proto.metadata_props[:]
        onnx.helper.set_model_props(proto, props)
        onnx.save(proto, lone / f"{name}.onnx")
    table, _ = sequences()
    pq.write_table(table, tmp_path / "seq.parquet")
    for name, message in (("wrong", "self-test output 'output' expected"), ("none", "no self-test")):
        result = batch("--model", str(lone / f"{name}.onnx"), "--input", str(tmp_path / "seq.parquet"),
                       "--output", str(tmp_path / name))  # fmt: skip
        assert result.returncode == 1 and message in result.stderr, result.stderr
        assert not list((tmp_path / name).glob("part-*"))


def _bad_image_rows() -> pa.Array:
    """Rows 0 and 3 good; row 1 a 3x64x64 image; row 2 ragged (one of its rows is 95 long)."""
    x = images(4).tolist()
    x[1] = np.zeros((3, 64, 64), np.float32).tolist()
    x[2][1][7] = x[2][1][7][:95]
    return nested(x, 3)


def _write_bad(kind: str, path):
    """(file, column, arguments, what the error says) for one kind of bad cell."""
    if kind in ("wrong-size", "ragged"):
        column = _bad_image_rows()
        if kind == "ragged":  # the wrong-size row made good: the ragged one is the first bad row
            column = pa.concat_arrays([column.slice(0, 1), column.slice(0, 1), column.slice(2)])
        pq.write_table(pa.table({"image": column}), path / "in.parquet")
        want = ("row 1" if kind == "wrong-size" else "row 2", "shape (3, 64, 64), expected (3, 96, 96)")
        want = want if kind == "wrong-size" else (want[0], "ragged nested list: lengths 95 to 96 at depth 3")
        return path / "in.parquet", "image", ("--model", "cnn"), want
    if kind == "nan":  # a value the input cannot take, at [0, 0, 5] of row 2 (a nested list)
        x = images(3)
        x[2, 0, 0, 5] = np.nan
        pq.write_table(pa.table({"image": nested(x, 3)}), path / "in.parquet")
        return path / "in.parquet", "image", ("--model", "cnn"), ("row 2", "value 5 (row-major): nan is not")
    if kind == "flat-size":  # a flattened column of the wrong size: refused before any row is read
        flat = pa.FixedSizeListArray.from_arrays(pa.array(np.zeros(200, np.float32)), 100)
        pq.write_table(pa.table({"image": flat}), path / "in.parquet")
        return path / "in.parquet", "image", ("--model", "cnn"), ("fixed_size_list", "100 values per row")
    table, _ = sequences()
    if kind == "too-long":  # row 1: 20 tokens, beyond the position table (16): onnxruntime refuses its group
        long = [list(range(20))] + [[1] * 9]
        ids, masks = table["input_ids"].to_pylist(), table["attention_mask"].to_pylist()
        ids[1], masks[1], ids[4], masks[4] = long[0], [1] * 20, long[1], [1] * 9
        pq.write_table(pa.table({"input_ids": ids, "attention_mask": masks}), path / "in.parquet")
        return (
            path / "in.parquet",
            "input_ids",
            ("--model", "transformer"),
            ("row 1", "the model refused the row"),
        )
    ids = [json.dumps(v) for v in table["input_ids"].to_pylist()]
    masks = [json.dumps(v) for v in table["attention_mask"].to_pylist()]
    args = ("--model", "transformer")
    if kind == "long-csv-cell":
        ids[3] = json.dumps(list(range(10)) * 8)  # 80 ids: more characters than --max-cell-chars 100
        args += ("--max-cell-chars", "100")
        want = ("row 3", "characters of JSON, more than --max-cell-chars 100")
    else:  # not JSON at all
        ids[2] = "[1, 2"
        want = ("row 2", "not JSON")
    pacsv.write_csv(pa.table({"input_ids": ids, "attention_mask": masks}), path / "in.csv")
    return path / "in.csv", "input_ids", args, want


@pytest.mark.parametrize(
    "kind", ["wrong-size", "ragged", "nan", "flat-size", "long-csv-cell", "bad-json", "too-long"]
)
def test_a_bad_cell_is_one_error_naming_file_row_and_column(artifacts, tmp_path, kind):
    source, column, args, want = _write_bad(kind, tmp_path)
    result = batch(
        *args, "--artifacts", str(artifacts), "--input", str(source), "--output", str(tmp_path / "out")
    )
    lines = result.stderr.strip().splitlines()
    if kind == "too-long":  # onnxruntime's session logs its refusal itself (serve/model.py's level 3)
        lines = [line for line in lines if line.startswith("error: ")]
    assert result.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert str(source) in lines[0] and f"column {column!r}" in lines[0]
    assert all(w in lines[0] for w in want), lines[0]
    if kind in (
        "wrong-size",
        "long-csv-cell",
        "too-long",
    ):  # --on-error skip: the row is reported, the others scored
        skip = batch(*args, "--artifacts", str(artifacts), "--input", str(source), "--output",
                     str(tmp_path / "skip"), "--on-error", "skip")  # fmt: skip
        assert skip.returncode == 0, skip.stderr
        skipped = [
            json.loads(line) for line in (tmp_path / "skip" / "_skipped.jsonl").read_text().splitlines()
        ]
        bad_row = int(want[0].split()[1])
        assert [(s["row"], s["column"]) for s in skipped] == [(bad_row, column)] + (
            [(2, column)] if kind == "wrong-size" else []
        )


def sequence_model_dir(directory):
    """`seq2`: x float32 [batch, seq, 2] -> y = 2x [batch, seq, 2] (an output with a dynamic dimension)
    and total = sum(x) [batch], with its self-test in the metadata, named in a manifest."""
    from onnx import TensorProto, helper

    from oneneuron.schema import Signature
    from tests.manifest_helpers import onnx_entry, spec, write_manifest

    directory.mkdir(parents=True, exist_ok=True)
    graph = helper.make_graph(
        [
            helper.make_node("Mul", ["x", "two"], ["y"]),
            helper.make_node("ReduceSum", ["x", "axes"], ["total"], keepdims=0),
        ],
        "seq2",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "seq", 2])],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "seq", 2]),
            helper.make_tensor_value_info("total", TensorProto.FLOAT, ["batch"]),
        ],
        initializer=[
            helper.make_tensor("two", TensorProto.FLOAT, [], [2.0]),
            helper.make_tensor("axes", TensorProto.INT64, [2], [1, 2]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    selftest = {"inputs": {"x": [[[1.0, 2.0]]]}, "outputs": {"y": [[[2.0, 4.0]]], "total": [3.0]}}
    helper.set_model_props(
        model, {"model": "seq2", "selftest": json.dumps(selftest | {"atol": 0, "rtol": 0})}
    )
    (directory / "seq2.onnx").write_bytes(model.SerializeToString())
    outputs = (spec("y", "float32", "batch", "seq", 2), spec("total", "float32", "batch"))
    signature = Signature((spec("x", "float32", "batch", "seq", 2),), outputs)
    write_manifest(directory, [onnx_entry(directory, "seq2", signature)])
    return directory


def test_outputs_with_a_dynamic_dimension_come_back_as_nested_lists_in_input_order(tmp_path):
    """Rows of 1 and 3 steps, interleaved: `y` [batch, seq, 2] differs in shape between the two groups,
    and is written as list<list<float>> (Parquet) or JSON text (CSV), each row its own shape."""
    art = sequence_model_dir(tmp_path / "art")
    rows = [[[1.0, 2.0]], [[1.0, -1.0], [0.5, 0.25], [3.0, 4.0]], [[-2.0, 8.0]], [[0.0, 1.0]] * 3]
    pq.write_table(pa.table({"x": nested(rows, 2)}), tmp_path / "in.parquet")
    pacsv.write_csv(pa.table({"x": [json.dumps(r) for r in rows]}), tmp_path / "in.csv")
    for source, fmt in (("in.parquet", "parquet"), ("in.csv", "csv")):
        out = tmp_path / f"out-{source}"
        args = ("--model", "seq2", "--artifacts", str(art), "--format", fmt, "--keep", "")
        result = batch(*args, "--input", str(tmp_path / source), "--output", str(out))
        assert result.returncode == 0, result.stderr
        table = read_output(out)
        y = table["y"].to_pylist()
        if fmt == "csv":
            assert table.schema.field("y").type == pa.string()
            y = [json.loads(cell) for cell in y]
        else:
            assert table.schema.field("y").type == pa.list_(pa.list_(pa.float32()))
        assert y == [(2 * np.asarray(r)).tolist() for r in rows]
        assert table["total"].to_pylist() == [float(np.sum(r)) for r in rows]


def test_a_static_output_of_rank_three_is_nested_fixed_size_lists():
    from serve.batch.tensors import to_arrow, to_json

    y = np.arange(12, dtype=np.float32).reshape(2, 2, 3)
    arr = to_arrow(y, (2, 3))
    assert arr.type == pa.list_(pa.list_(pa.float32(), 3), 2) and arr.to_pylist() == y.tolist()
    assert [json.loads(cell) for cell in to_json(arr).to_pylist()] == y.tolist()
