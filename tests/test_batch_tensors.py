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
    if kind == "flat-size":  # a flattened column of the wrong size: refused before any row is read
        flat = pa.FixedSizeListArray.from_arrays(pa.array(np.zeros(200, np.float32)), 100)
        pq.write_table(pa.table({"image": flat}), path / "in.parquet")
        return path / "in.parquet", "image", ("--model", "cnn"), ("fixed_size_list", "100 values per row")
    table, _ = sequences()
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


@pytest.mark.parametrize("kind", ["wrong-size", "ragged", "flat-size", "long-csv-cell", "bad-json"])
def test_a_bad_cell_is_one_error_naming_file_row_and_column(artifacts, tmp_path, kind):
    source, column, args, want = _write_bad(kind, tmp_path)
    result = batch(
        *args, "--artifacts", str(artifacts), "--input", str(source), "--output", str(tmp_path / "out")
    )
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert str(source) in lines[0] and f"column {column!r}" in lines[0]
    assert all(w in lines[0] for w in want), lines[0]
    if kind in ("wrong-size", "long-csv-cell"):  # --on-error skip: the row is reported, the others scored
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
