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
from serve.batch import tensors
from serve.batch.job import BatchJob, Plan, output_columns, shape_text
from serve.inputs import PredictInputError


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
    text (a string column is not parsed: only CSV is text), anything not a number or a bool, and
    for a tensor input anything but lists of numbers nested as deep as its shape."""
    for inp in plan.inputs:
        for col in inp.columns:
            kind = types[col]
            if inp.tensor:
                why = tensors.type_problem(kind, inp.dims)
                if why is None:
                    continue
                raise InputError(
                    f"{source}: column {col!r} is {kind} ({why}); model input {inp.name!r} takes "
                    f"{inp.dtype} tensors of shape {shape_text(inp.dims)} per row: write each row as "
                    f"nested lists of that shape (list or fixed_size_list, one level per dimension), or, "
                    f"for a static shape, one fixed_size_list of all its values"
                )
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
    model: Any, job: BatchJob, table: pa.Table, source: str, first_row: int
) -> tuple[pa.Table, list[dict]]:
    """Score `table` (rows first_row.. of `source`) for `job`; returns (output table, skipped rows).

    Rows whose tensor inputs have different shapes (dynamic dimensions) run as one batch per shape,
    and their outputs are put back in input order."""
    plan, on_error = job.plan, job.on_error
    parsed: dict[str, tuple[Any, np.ndarray]] = {}
    keep_rows = np.ones(table.num_rows, dtype=bool)
    skipped: list[dict] = []
    for inp in plan.inputs:
        dtype = np.dtype(inp.dtype)
        for col in inp.columns:
            if col in parsed:
                continue
            if inp.tensor:
                try:
                    cells = tensors.parse(table.column(col), inp.dims, dtype, job.max_cell_chars, _parse)
                except ValueError as exc:  # what the bulk JSON reader alone refused
                    raise InputError(
                        f"{source}: rows {first_row}..{first_row + table.num_rows - 1}, column {col!r}: "
                        f"{exc}; fix the cells (one JSON nested list of numbers each)"
                    ) from None
                values, bad = cells, cells.bad
                reasons = [cells.reasons[int(r)] for r in np.flatnonzero(bad)]
            else:
                values, bad, reasons = _parse(table.column(col), dtype)
            parsed[col] = (values, bad)
            if bad.any():
                rows = np.flatnonzero(bad)
                if on_error == "fail":
                    raise _bad_cell(source, first_row + int(rows[0]), col, reasons[0], inp.name)
                for r, why in zip(rows, reasons, strict=True):
                    if keep_rows[r]:
                        skipped.append({"row": first_row + int(r), "column": col, "reason": why})
                keep_rows &= ~bad
    n = int(keep_rows.sum())
    kept_index = None if n == table.num_rows else np.flatnonzero(keep_rows)
    outputs = _run_groups(model, plan, parsed, kept_index, n, (source, first_row, on_error, skipped))
    skipped.sort(key=lambda s: s["row"])
    ok = outputs.pop(_KEPT, None)  # rows the model refused in --on-error skip: dropped as well
    if ok is not None:
        keep_rows[keep_rows] = ok
        n = int(ok.sum())
    kept = table.select(list(plan.keep))
    if n != table.num_rows:
        kept = kept.filter(pa.array(keep_rows))
    arrays, names = list(kept.columns), list(kept.column_names)
    for out in plan.outputs:
        y = outputs.get(out.name)
        if y is None:  # no row left: an empty column of the output's own type
            y = np.zeros((0, *(d or 0 for d in out.dims)), dtype=out.dtype)
        cols = output_columns(out, job.fmt)
        if out.tensor:
            arr = tensors.to_arrow(y, out.dims)
            arrays.append(tensors.to_json(arr) if job.fmt == "csv" else arr)
        else:
            y = y.reshape(n, -1)
            if len(cols) == 1 and y.shape[1] == 1:
                arrays.append(pa.array(y[:, 0]))
            elif len(cols) == 1:
                arrays.append(pa.FixedSizeListArray.from_arrays(pa.array(y.reshape(-1)), y.shape[1]))
            else:
                arrays += [pa.array(y[:, i]) for i in range(y.shape[1])]
        names += cols
    return pa.Table.from_arrays(arrays, names=names), skipped


_KEPT = "\0kept"  # in `_run_groups`' result: which of the kept rows the model took (skip mode)


def _bad_cell(source: str, row: int, col: str, why: str, name: str) -> InputError:
    return InputError(
        f"{source}: row {row} (0-based data row), column {col!r}: {why} (input {name!r}); "
        "fix the file or pass --on-error skip"
    )


def _run_groups(model: Any, plan: Plan, parsed: dict, kept: np.ndarray | None, n: int, where: tuple) -> dict:
    """Run the kept rows (`kept`: their indices; None: all), one batch per shape of the tensor inputs;
    returns {output: array [n, ...] or (values, shapes) when shapes differ}."""
    if not n:
        return {}
    source, first_row, on_error, skipped = where
    tensor_inputs = [inp for inp in plan.inputs if inp.tensor]
    shapes = [parsed[inp.columns[0]][0].shapes if kept is None else parsed[inp.columns[0]][0].shapes[kept]
              for inp in tensor_inputs]  # fmt: skip
    results: dict[str, list] = {out.name: [] for out in plan.outputs}
    ok = np.ones(n, dtype=bool)
    for rows, group_shapes in tensors.groups(shapes):
        index = kept if rows is None else rows if kept is None else kept[rows]
        feeds = _feeds(
            plan, parsed, index, dict(zip((i.name for i in tensor_inputs), group_shapes, strict=True))
        )
        local = np.arange(n) if rows is None else rows
        try:
            outputs = model.run(feeds)
        except PredictInputError as exc:  # onnxruntime refused these rows' values or shape
            at = local if kept is None else kept[local]
            inp = (tensor_inputs or plan.inputs)[0]
            if on_error == "fail":
                why = f"the model refused the row: {exc}"
                raise _bad_cell(source, first_row + int(at[0]), inp.columns[0], why, inp.name) from None
            outputs = _one_by_one(model, feeds, skipped, (first_row, at, inp.columns[0]))
            ok[local] = outputs.pop(_KEPT)
            local = local[ok[local]]
        for name, y in outputs.items():
            if name in results:
                results[name].append((None if rows is None and ok.all() else local, y))
    if not ok.all():  # rows the model refused are gone: number the others again
        renumber = np.cumsum(ok) - 1
        results = {name: [(renumber[r], y) for r, y in parts] for name, parts in results.items()}
    out = {name: tensors.gather(parts, int(ok.sum())) if parts else None for name, parts in results.items()}
    if not ok.all():
        out[_KEPT] = ok
    return out


def _feeds(plan: Plan, parsed: dict, index: np.ndarray | None, shapes: dict) -> dict[str, np.ndarray]:
    """The model's feeds for rows `index` of the batch (None: all of them)."""
    feeds = {}
    for inp in plan.inputs:
        if inp.tensor:
            x = parsed[inp.columns[0]][0].take(index, shapes[inp.name])
        else:
            cols = [parsed[c][0] if index is None else parsed[c][0][index] for c in inp.columns]
            x = cols[0] if inp.flat else cols[0].reshape(-1, 1) if len(cols) == 1 else np.stack(cols, axis=1)
        feeds[inp.name] = x.astype(inp.dtype, copy=False)
    return feeds


def _one_by_one(model: Any, feeds: dict, skipped: list[dict], where: tuple) -> dict:
    """--on-error skip after the model refused a batch: run its rows one at a time (this error path
    only) and skip the ones it refuses; returns the outputs of the others and which were kept."""
    first_row, at, what = where
    ok, parts = np.ones(len(at), dtype=bool), []
    for r in range(len(at)):
        try:
            parts.append(model.run({k: v[r : r + 1] for k, v in feeds.items()}))
        except PredictInputError as exc:
            ok[r] = False
            skipped.append(
                {"row": first_row + int(at[r]), "column": what, "reason": f"the model refused it: {exc}"}
            )
    out = {name: np.concatenate([p[name] for p in parts]) for name in (parts[0] if parts else {})}
    return out | {_KEPT: ok}
