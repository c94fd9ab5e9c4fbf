"""One chunk through the model: parse the input cells, run, and build the output table.

A cell that is empty, not a number, not finite, outside the input dtype's range, not an
integer for an integer input, not 0/1 for a bool input, or an integer the input's float dtype
cannot hold exactly (int64 above 2^24 into float32) is a bad cell: `fail` raises naming file,
row and column; `skip` drops the row and returns it for the report. Rows are 0-based within
the file. Parquet columns of other types (text included) are refused before any row is read.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from oneneuron.errors import InputError
from serve.batch.job import Plan, output_columns


def _parse(arr: pa.ChunkedArray, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Column -> (values, bad-row mask, reason per bad row). A column already of the input's
    dtype without nulls is used in place (zero-copy). Integer and bool columns keep their exact
    values and are bad where the input's dtype cannot hold them exactly (an int64 above 2^24 for
    a float32 input); text (CSV) and float columns are parsed through float64."""
    arr = arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr
    fast = arr.null_count == 0 and dtype.kind in "fiub" and arr.type == pa.from_numpy_dtype(dtype)
    if not fast:
        import pyarrow.compute as pc  # ~60 ms to import: only when a column needs parsing
    if fast:
        values = arr.to_numpy(zero_copy_only=dtype.kind != "b")  # arrow packs bools in bits
        bad = ~np.isfinite(values) if dtype.kind == "f" else np.zeros(len(values), dtype=bool)
    elif pa.types.is_integer(arr.type) or pa.types.is_boolean(arr.type):
        values, bad = _exact(arr, dtype)
    elif pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type):
        arr = pc.utf8_trim_whitespace(arr)
        try:
            if dtype.kind in "iu":  # integers as text: exact when every cell is one (no float64 rounding)
                values, bad = _exact(pc.cast(arr, pa.int64()), dtype)
                return values, bad, _reasons(arr, bad, dtype)
        except pa.ArrowInvalid:
            pass
        try:
            values = pc.cast(arr, pa.float64()).to_numpy(zero_copy_only=False, writable=True)
        except pa.ArrowInvalid:  # at least one cell is not a number: find them one by one
            values = np.array([_to_float(v) for v in arr.to_pylist()], dtype=np.float64)
        empty = np.asarray(pc.equal(arr, "").fill_null(True).to_numpy(zero_copy_only=False), dtype=bool)
        values[empty] = np.nan
    elif pa.types.is_floating(arr.type):
        values = pc.cast(arr, pa.float64()).fill_null(np.nan).to_numpy(zero_copy_only=False)
    else:  # refused before any row is read (check_types); kept bad rather than guessed
        values = np.full(len(arr), np.nan)
    if not fast and values.dtype == np.float64:
        with np.errstate(invalid="ignore"):
            bad = ~np.isfinite(values)
            if dtype.kind == "f":
                bad |= np.abs(values) > np.finfo(dtype).max
            elif dtype.kind in "iu":
                info = np.iinfo(dtype)
                bad |= (values != np.round(values)) | (values < info.min) | (values > info.max)
                bad |= np.abs(values) > 2.0**53  # float64 has already rounded such an integer
            elif dtype.kind == "b":
                bad |= (values != 0) & (values != 1)
    return values, bad, _reasons(arr, bad, dtype)


def _exact(arr: pa.Array, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    """An integer or bool column's own values (int64, uint64 or bool) and where `dtype` cannot
    hold them exactly (or they are null)."""
    nulls = np.asarray(arr.is_null().to_numpy(zero_copy_only=False), dtype=bool)
    fill = False if pa.types.is_boolean(arr.type) else 0
    values = arr.fill_null(fill).to_numpy(zero_copy_only=False)
    bad = nulls.copy()
    if values.dtype == np.bool_:
        return values, bad  # 0 and 1 fit every numeric dtype exactly
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        bad |= (values < info.min) | (values > info.max)
    elif dtype.kind == "f":
        with np.errstate(invalid="ignore", over="ignore"):  # out of range: a garbage round trip, so bad
            bad |= values.astype(dtype).astype(values.dtype) != values
    elif dtype.kind == "b":
        bad |= (values != 0) & (values != 1)
    return values, bad


def _reasons(arr: pa.Array, bad: np.ndarray, dtype: np.dtype) -> list[str]:
    """Why each bad cell is bad, with its value and, where it is not obvious, the fix."""
    if not bad.any():
        return []
    out = []
    for raw in arr.filter(pa.array(bad)).to_pylist():
        if raw in (None, ""):
            out.append(f"empty is not a finite {dtype.name}")
        elif dtype.kind == "f" and isinstance(raw, int) and not isinstance(raw, bool):
            bits = np.finfo(dtype).nmant + 1
            out.append(
                f"integer {raw} is not exactly a {dtype.name} (it rounds integers beyond 2^{bits} = "
                f"{2**bits:,}); keep such values (ids, counts) out of the model's input, scale them, "
                "or export the model with a float64 or int64 input"
            )
        elif dtype.kind in "iu" and (isinstance(raw, int) or _to_float(raw) == _to_float(raw)):
            info = np.iinfo(dtype)
            out.append(f"{raw!r} is not an exact {dtype.name} (integers in [{info.min}, {info.max}])")
        elif dtype.kind == "b":
            out.append(f"{raw!r} is not 0 or 1 (the input is bool)")
        else:
            out.append(f"{raw!r} is not a finite {dtype.name}")
    return out


def check_types(plan: Plan, types: dict[str, pa.DataType], source: str) -> None:
    """Refuse, before any row is read, a Parquet column of a type no model input is fed from:
    text (a string column is not parsed: only CSV is text) or anything not a number or a bool."""
    for inp in plan.inputs:
        for col in inp.columns:
            kind = types[col]
            if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind):
                continue
            text = pa.types.is_string(kind) or pa.types.is_large_string(kind)
            raise InputError(
                f"{source}: column {col!r} is {'a string' if text else kind} column; model input "
                f"{inp.name!r} takes {inp.dtype} numbers: write the column as a number type (e.g. "
                f"pyarrow.compute.cast(column, pyarrow.{inp.dtype}())), or score the file as CSV"
            )


def _to_float(text: Any) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return float("nan")


def score(
    model: Any, plan: Plan, table: pa.Table, fmt: str, on_error: str, source: str, first_row: int
) -> tuple[pa.Table, list[dict]]:
    """Score `table` (rows first_row.. of `source`); returns (output table, skipped rows)."""
    parsed: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    keep_rows = np.ones(table.num_rows, dtype=bool)
    skipped: list[dict] = []
    for inp in plan.inputs:
        dtype = np.dtype(inp.dtype)
        for col in inp.columns:
            if col in parsed:
                continue
            values, bad, reasons = _parse(table.column(col), dtype)
            parsed[col] = (values, bad)
            if bad.any():
                rows = np.flatnonzero(bad)
                if on_error == "fail":
                    raise InputError(
                        f"{source}: row {first_row + int(rows[0])} (0-based data row), column {col!r}: "
                        f"{reasons[0]} (input {inp.name!r}); fix the file or pass --on-error skip"
                    )
                for r, why in zip(rows, reasons, strict=True):
                    if keep_rows[r]:
                        skipped.append({"row": first_row + int(r), "column": col, "reason": why})
                keep_rows &= ~bad
    skipped.sort(key=lambda s: s["row"])
    n = int(keep_rows.sum())
    feeds = {}
    for inp in plan.inputs:
        cols = [parsed[c][0] if n == table.num_rows else parsed[c][0][keep_rows] for c in inp.columns]
        x = cols[0] if inp.flat else cols[0].reshape(-1, 1) if len(cols) == 1 else np.stack(cols, axis=1)
        feeds[inp.name] = x.astype(inp.dtype, copy=False)
    outputs = model.run(feeds) if n else {}
    kept = table.select(list(plan.keep))
    if n != table.num_rows:
        kept = kept.filter(pa.array(keep_rows))
    arrays, names = list(kept.columns), list(kept.column_names)
    for out in plan.outputs:
        y = outputs.get(out.name)
        width = out.width or (int(np.prod(y.shape[1:])) if y is not None else 1)
        y = np.zeros((0, width), dtype=np.float32) if y is None else y.reshape(n, -1)
        cols = output_columns(out, fmt)
        if len(cols) == 1 and (out.width == 1 or y.shape[1] == 1):
            arrays.append(pa.array(y[:, 0]))
        elif len(cols) == 1:
            arrays.append(pa.FixedSizeListArray.from_arrays(pa.array(y.reshape(-1)), y.shape[1]))
        else:
            arrays += [pa.array(y[:, i]) for i in range(y.shape[1])]
        names += cols
    return pa.Table.from_arrays(arrays, names=names), skipped
