"""Tensor columns of `python -m serve.batch`: one cell holds one row's tensor, of any rank.

Parquet: a `list`, `large_list` or `fixed_size_list` column nested as deep as the input's shape
(an image [3, 96, 96] as list<list<list<float>>>), or, for an input whose shape is all static,
one flat list of all its values (fixed_size_list<27648> for [3, 96, 96]). CSV: the same nested
lists as JSON text (`[[1, 2], [3, 4]]`), at most `--max-cell-chars` characters, parsed in bulk by
pyarrow's JSON reader into the same list arrays. Either way a column becomes `Cells`: the leaf
values flattened in row order (a fixed_size_list column without nulls: pyarrow's own buffer,
zero-copy) and each row's shape, found with vectorised offset arithmetic, never a loop per row.

A null at any depth, a ragged nested list (rows of one row's matrix of different lengths), a
shape other than the model's static dimensions or a value the input's dtype cannot hold is a bad
cell of that row, with a reason. Rows whose shapes differ only in dimensions the model declares
dynamic (token sequences of different lengths) are grouped by shape (`groups`): each group runs
as one batch and the outputs go back in input order.
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from serve.batch.job import shape_text

LIST_TYPES = (pa.types.is_list, pa.types.is_large_list, pa.types.is_fixed_size_list)


@dataclass(frozen=True)
class Cells:
    """One tensor column of a batch, parsed: each row's values and shape."""

    values: np.ndarray  # 1-D: every row's values in row-major order (bad rows' too, where they parsed)
    shapes: np.ndarray  # (rows, rank) int64: each good row's shape (the model's rank)
    starts: np.ndarray | None  # (rows,) offset of each row's first value; None: row r at r * size
    bad: np.ndarray  # (rows,) bool
    reasons: dict[int, str]  # row -> why it is bad (the first problem found)

    def take(self, rows: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray:
        """The rows (None: all, each of `shape`) as one array [len(rows), *shape]."""
        size = math.prod(shape)
        if rows is None:  # every row, all of one shape: a view of the values when they are contiguous
            n = len(self.bad)
            if self.starts is None or (n and self.starts[0] == 0 and self.starts[-1] == (n - 1) * size):
                return self.values[: n * size].reshape(n, *shape)
            rows = np.arange(n)
        starts = rows * size if self.starts is None else self.starts[rows]
        return self.values[starts[:, None] + np.arange(size)].reshape(len(rows), *shape)


def list_depth(kind: pa.DataType) -> tuple[int, pa.DataType]:
    """How many list levels `kind` nests, and its leaf type."""
    depth = 0
    while any(is_list(kind) for is_list in LIST_TYPES):
        kind, depth = kind.value_type, depth + 1
    return depth, kind


def type_problem(kind: pa.DataType, dims: tuple[int | None, ...]) -> str | None:
    """Why a Parquet column of type `kind` cannot hold rows of shape `dims` (None: it can)."""
    depth, leaf = list_depth(kind)
    numeric = pa.types.is_integer(leaf) or pa.types.is_floating(leaf) or pa.types.is_boolean(leaf)
    flat_ok = depth == 1 and all(isinstance(d, int) for d in dims)
    if depth != len(dims) and not flat_ok:
        return f"{depth} list level(s), not {len(dims)}"
    if not numeric:
        return f"its values are {leaf}, not numbers"
    if pa.types.is_fixed_size_list(kind) and depth == len(dims):
        sizes, k = [], kind
        while pa.types.is_fixed_size_list(k):
            sizes.append(k.list_size)
            k = k.value_type
        if any(isinstance(d, int) and d != s for d, s in zip(dims, sizes, strict=False)):
            return f"fixed sizes {tuple(sizes)}"
    if pa.types.is_fixed_size_list(kind) and depth == 1 != len(dims) and kind.list_size != math.prod(dims):
        return f"{kind.list_size} values per row, not {math.prod(dims)}"
    return None


def parse(
    arr: pa.ChunkedArray | pa.Array, dims: tuple[int | None, ...], dtype: np.dtype, max_chars: int, parse_leaf
) -> Cells:
    """A tensor column -> `Cells` for an input whose rows have shape `dims`. `parse_leaf(array, dtype)`
    is score.py's cell rule for scalar columns: (values, bad, reasons) per value."""
    arr = arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr
    reasons: dict[int, str] = {}
    bad = np.zeros(len(arr), dtype=bool)
    if pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type):
        arr = _from_json(arr, len(dims), dtype, max_chars, bad, reasons)
    fast = _fixed(arr, dims)
    if fast is not None:
        return _leaf(
            fast, None, np.tile(np.asarray(dims, np.int64), (len(arr), 1)), dtype, bad, reasons, parse_leaf
        )
    depth = list_depth(arr.type)[0]
    rows = len(arr)
    shapes = np.zeros((rows, depth), dtype=np.int64)
    owner = np.arange(rows)  # the row of each element at the current level
    level = arr
    for k in range(depth):
        _mark(bad, reasons, owner[_nulls(level)], f"null at depth {k}" if k else "empty (null)")
        lens = _lengths(level)
        counts = np.bincount(owner, minlength=rows)
        some = counts > 0
        firsts = (np.cumsum(counts) - counts)[some]
        if len(lens):
            low, high = np.zeros(rows, np.int64), np.zeros(rows, np.int64)
            low[some], high[some] = np.minimum.reduceat(lens, firsts), np.maximum.reduceat(lens, firsts)
            ragged = np.flatnonzero(low != high)
            for r in ragged[~bad[ragged]]:
                reasons[int(r)] = f"ragged nested list: lengths {low[r]} to {high[r]} at depth {k + 1}"
            bad[ragged] = True
            shapes[:, k] = low
        if k == depth - 1:  # values per row: no owner array as long as the values themselves
            sizes = np.bincount(owner, weights=lens, minlength=rows).astype(np.int64)
        else:
            owner = np.repeat(owner, lens)
        level = level.flatten()
    if depth != len(dims):  # one flat list per row for a static shape: its length is the whole size
        whole = shapes[:, 0] == math.prod(dims)
        size = math.prod(dims)
        why = f"values, expected {size} (the shape {shape_text(dims)} flattened)"
        _mark(bad, reasons, np.flatnonzero(~whole), lambda r: f"{shapes[r, 0]} {why}")
        shapes = np.tile(np.asarray(dims, np.int64), (rows, 1))
    else:
        wrong = np.zeros(rows, dtype=bool)
        for k, d in enumerate(dims):
            if d is not None:
                wrong |= shapes[:, k] != d
        wrong |= (shapes == 0).any(axis=1)
        _mark(
            bad,
            reasons,
            np.flatnonzero(wrong),
            lambda r: f"shape {shape_text(shapes[r])}, expected {shape_text(dims)}",
        )
    return _leaf(level, np.cumsum(sizes) - sizes, shapes, dtype, bad, reasons, parse_leaf)


def _leaf(level, starts, shapes, dtype, bad, reasons, parse_leaf) -> Cells:
    """Parse the leaf values; a row with a bad value is bad (its first one named)."""
    values, bad_values, why = parse_leaf(level, dtype)
    if bad_values.any():
        at = np.flatnonzero(bad_values)
        size = max(math.prod(shapes[0]), 1) if len(shapes) else 1
        # the row of each bad value: the last row starting at or before it (empty rows start there too)
        rows = at // size if starts is None else np.searchsorted(starts, at, side="right") - 1
        first = rows * size if starts is None else starts[rows]
        for r, i, text in zip(rows.tolist(), (at - first).tolist(), why, strict=True):
            if not bad[r]:
                bad[r] = True
                reasons[r] = f"value {i} (row-major): {text}"
    return Cells(values, shapes, starts, bad, reasons)


def _fixed(arr: pa.Array, dims: tuple) -> pa.Array | None:
    """The leaf values of a fixed_size_list column without nulls whose sizes are the model's static
    shape (nested, or flattened into one list): rows are at r * size, no offsets needed."""
    if any(d is None for d in dims):
        return None
    level, sizes = arr, []
    while pa.types.is_fixed_size_list(level.type):
        if level.null_count:
            return None
        sizes.append(level.type.list_size)
        level = level.flatten()
    if any(is_list(level.type) for is_list in LIST_TYPES) or level.null_count:
        return None
    return level if tuple(sizes) == tuple(dims) or sizes == [math.prod(dims)] else None


def _nulls(level: pa.Array) -> np.ndarray:
    if not level.null_count:
        return np.zeros(len(level), dtype=bool)
    return np.asarray(level.is_null().to_numpy(zero_copy_only=False), dtype=bool)


def _lengths(level: pa.Array) -> np.ndarray:
    import pyarrow.compute as pc

    return np.asarray(pc.list_value_length(level).fill_null(0).to_numpy(zero_copy_only=False), dtype=np.int64)


def _mark(bad: np.ndarray, reasons: dict[int, str], rows: np.ndarray, why) -> None:
    """Mark `rows` bad with `why` (text, or a function of the row), keeping an earlier reason."""
    for r in np.unique(rows).tolist():
        if not bad[r]:
            bad[r] = True
            reasons[r] = why(r) if callable(why) else why


# -- CSV: JSON text cells ---------------------------------------------------------------------------------
def _from_json(
    cells: pa.Array, depth: int, dtype: np.dtype, max_chars: int, bad: np.ndarray, reasons: dict[int, str]
) -> pa.Array:
    """JSON text cells -> a list array of `depth` levels, read in bulk by pyarrow's JSON reader: each
    cell becomes the line `{"v":[CELL]}`, so a cell is one value of a one-element outer list and can
    neither add a field nor close the object (the reader refuses both). Empty, over-long and
    unparsable cells become nulls and are marked bad with their reason; a line break in a cell
    (JSON whitespace between numbers) is a space."""
    import pyarrow.compute as pc
    import pyarrow.json as pj

    text = pc.utf8_trim_whitespace(cells.cast(pa.large_string()))
    length = np.asarray(pc.utf8_length(text).fill_null(0).to_numpy(zero_copy_only=False), dtype=np.int64)
    _mark(bad, reasons, np.flatnonzero(length == 0), "empty, expected a JSON nested list")
    long = np.flatnonzero(length > max_chars)
    _mark(
        bad,
        reasons,
        long,
        lambda r: f"{length[r]:,} characters of JSON, more than --max-cell-chars {max_chars:,}",
    )
    leaf = pa.int64() if dtype.kind in "iu" else pa.float64()  # bool: 0 / 1, as in a scalar CSV cell
    kind = leaf
    for _ in range(depth + 1):
        kind = pa.list_(kind)
    schema = pa.schema([("v", kind)])
    for attempt in range(2):
        if bad.any():
            text = pc.if_else(pa.array(bad), pa.scalar("null", pa.large_string()), text)
        one_line = pc.replace_substring_regex(text, "[\r\n]", " ")
        big = pa.large_string()
        lines = pc.binary_join_element_wise(
            pa.scalar('{"v":[', big), one_line, pa.scalar("]}\n", big), pa.scalar("", big)
        )
        data = _joined(lines)
        try:
            table = pj.read_json(
                io.BytesIO(data),
                read_options=pj.ReadOptions(use_threads=False, block_size=max(len(data) + 1, 1 << 16)),
                parse_options=pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="error"),
            )
            break
        except pa.ArrowInvalid as exc:
            if attempt:  # the reader refused what json.loads accepted: name the batch, not a row
                raise ValueError(f"cells the JSON reader cannot read ({str(exc)[:200]})") from None
            _diagnose(text, depth, dtype, bad, reasons)
    outer = table.column("v").combine_chunks()  # one element per row: `[CELL]`
    several = np.flatnonzero(_lengths(outer) != 1)
    _mark(bad, reasons, several, "more than one JSON value, expected one nested list")
    return pc.list_element(outer, 0)


def _joined(lines: pa.Array) -> bytes:
    """The concatenated bytes of a large_string array's values (its lines, in order)."""
    lines = lines.combine_chunks() if isinstance(lines, pa.ChunkedArray) else lines
    if not len(lines):
        return b""
    offsets = np.frombuffer(lines.buffers()[1], dtype=np.int64)[lines.offset : lines.offset + len(lines) + 1]
    return memoryview(lines.buffers()[2])[offsets[0] : offsets[-1]].tobytes()


def _diagnose(text: pa.Array, depth: int, dtype: np.dtype, bad: np.ndarray, reasons: dict[int, str]) -> None:
    """The bulk read failed: find the cells that are not a nested list of numbers `depth` deep, one
    by one (only on this error path), and mark them bad."""
    integer = dtype.kind in "iu"
    for r, cell in enumerate(text.to_pylist()):
        if bad[r]:
            continue
        why = _cell_problem(cell, depth, integer)
        if why is not None:
            bad[r], reasons[r] = True, why


def _cell_problem(cell: str, depth: int, integer: bool) -> str | None:
    try:
        doc = json.loads(cell)
    except (ValueError, RecursionError) as exc:
        return f"not JSON ({str(exc)[:60]}): {cell[:40]!r}"
    level = [doc]
    for k in range(depth):
        if not all(isinstance(v, list) for v in level):
            return f"not a nested list {depth} deep (a number at depth {k}): {cell[:40]!r}"
        level = [v for sub in level for v in sub]
    for v in level:
        if isinstance(v, list):
            return f"nested deeper than {depth} list level(s): {cell[:40]!r}"
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return f"{json.dumps(v)[:20]} is not a number"
        if integer and not isinstance(v, int):
            return f"{v!r} is not an integer (the input is integer)"
        if integer and not -(2**63) <= v < 2**63:
            return f"{v} is beyond int64"
    return None


# -- groups of equal shape, and outputs back in input order ---------------------------------------------
def groups(shapes: list[np.ndarray]) -> list[tuple[np.ndarray | None, tuple[tuple[int, ...], ...]]]:
    """Rows grouped by their shapes in every tensor input: [(rows, one shape per input)], in order of
    first appearance; rows None when every row has the same shapes."""
    if not shapes:
        return [(None, ())]
    widths = [s.shape[1] for s in shapes]
    keys = np.concatenate(shapes, axis=1) if len(shapes) > 1 else shapes[0]
    if not len(keys) or (keys == keys[0]).all():
        return [(None, _split(keys[0] if len(keys) else np.zeros(sum(widths), np.int64), widths))]
    unique, first, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    order = np.argsort(first)
    inverse = inverse.reshape(-1)
    return [(np.flatnonzero(inverse == g), _split(unique[g], widths)) for g in order]


def _split(key: np.ndarray, widths: list[int]) -> tuple[tuple[int, ...], ...]:
    out, at = [], 0
    for w in widths:
        out.append(tuple(int(d) for d in key[at : at + w]))
        at += w
    return tuple(out)


def gather(
    parts: list[tuple[np.ndarray | None, np.ndarray]], n: int
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """One output's groups [(rows, array)] back in input order: one array [n, *shape] when every group
    has the same shape, else (values flattened in row order, shapes [n, rank])."""
    if len(parts) == 1 and parts[0][0] is None:
        return parts[0][1]
    first = parts[0][1]
    if all(y.shape[1:] == first.shape[1:] and y.dtype == first.dtype for _, y in parts):
        out = np.empty((n, *first.shape[1:]), dtype=first.dtype)
        for rows, y in parts:
            out[rows] = y
        return out
    shapes = np.zeros((n, first.ndim - 1), dtype=np.int64)
    for rows, y in parts:
        shapes[rows] = y.shape[1:]
    sizes = shapes.prod(axis=1)
    starts = np.cumsum(sizes) - sizes
    values = np.empty(int(sizes.sum()), dtype=np.result_type(*(y.dtype for _, y in parts)))
    for rows, y in parts:
        size = math.prod(y.shape[1:])
        values[(starts[rows][:, None] + np.arange(size)).reshape(-1)] = y.reshape(-1)
    return values, shapes


def to_arrow(y: np.ndarray | tuple[np.ndarray, np.ndarray], dims: tuple[int | None, ...]) -> pa.Array:
    """An output tensor as nested lists: fixed_size_list levels for a static shape, list levels
    (with offsets) when the model declares a dimension dynamic, so every part has one schema."""
    if isinstance(y, np.ndarray):
        n = y.shape[0]
        values, shapes = y.reshape(-1), np.tile(np.asarray(y.shape[1:], np.int64), (n, 1))
    else:
        values, shapes = y
    arr = pa.array(values)
    if all(d is not None for d in dims):
        for d in reversed(dims):
            arr = pa.FixedSizeListArray.from_arrays(arr, d)
        return arr
    # level k: each of the row's prod(shape[:k]) lists has shape[k] elements
    for k in reversed(range(len(dims))):
        count = shapes[:, :k].prod(axis=1)
        lengths = np.repeat(shapes[:, k], count)
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
        arr = pa.ListArray.from_arrays(pa.array(offsets), arr)
    return arr


def to_json(arr: pa.Array) -> pa.Array:
    """Nested lists as JSON text, one cell per row (CSV output; Python's float repr round-trips)."""
    return pa.array([json.dumps(v) for v in arr.to_pylist()], pa.string())
