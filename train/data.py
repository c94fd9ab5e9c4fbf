"""The training data (the article's six points or a CSV), the analytic reference and the probe batch."""

from __future__ import annotations

import csv
import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from oneneuron.errors import InputError
from oneneuron.fsio import sha256_file
from oneneuron.schema import DataInfo, DataSplit, Probe, Reference

# The article's six points (y = 2x - 1), float32 as both frameworks train on them.
ARTICLE_X = [-1.0, 0.0, 1.0, 2.0, 3.0, 4.0]
ARTICLE_Y = [-3.0, -1.0, 1.0, 3.0, 5.0, 7.0]
HEADLINE_X = 10.0  # the article predicts at x = 10
PROBE_EXTRA = (0.0, HEADLINE_X, -1000.0, 1000.0)  # points beyond the data's range
MAX_PROBE_ROWS = 64  # data rows carried into the probe batch
DEFAULT_TARGET = "y"
MAX_REPORTED = 20  # bad cells (or rows) listed in one validation error; the rest are counted
OTHER_DELIMITERS = {";": "';'", "\t": "tab", "|": "'|'"}  # separators we recognise and name in a hint
_FLOAT32_MAX = float(np.finfo(np.float32).max)


@dataclass(frozen=True)
class Dataset:
    """Features `x` (rows, n) and target `y` (rows, 1), both float32; with a split, the test rows."""

    x: np.ndarray
    y: np.ndarray
    features: tuple[str, ...]
    target: str
    source: str  # "article" or the CSV path
    file_sha256: str | None = None  # sha256 of the CSV file's bytes (None for the article's data)
    columns: tuple[str, ...] = ()  # the file's header; () means features + target
    test_index: np.ndarray | None = None  # sorted 0-based test rows (train/split.py); None: all train
    split: DataSplit | None = None

    @property
    def n_features(self) -> int:
        return self.x.shape[1]

    @property
    def sha256(self) -> str:
        """sha256 of the float32 little-endian bytes of x (row-major) followed by y."""
        h = hashlib.sha256()
        h.update(np.ascontiguousarray(self.x, dtype="<f4").tobytes())
        h.update(np.ascontiguousarray(self.y, dtype="<f4").tobytes())
        return h.hexdigest()

    def info(self) -> DataInfo:
        """The data's identity as recorded in the training record and the manifest."""
        return DataInfo(
            self.source,
            self.sha256,
            int(self.x.shape[0]),
            tuple(self.features),
            self.target,
            self.file_sha256,
            tuple(self.columns) or (*self.features, self.target),
            self.split,
        )

    def describe(self) -> dict:
        """`info()` as JSON, as training.json's `data` holds it."""
        return self.info().to_json()

    def with_split(self, test_index: np.ndarray, split: DataSplit) -> Dataset:
        return replace(self, test_index=np.asarray(test_index, dtype=np.int64), split=split)

    def _rows(self, test: bool) -> np.ndarray:
        mask = np.zeros(len(self.x), dtype=bool)
        if self.test_index is not None:
            mask[self.test_index] = True
        return mask if test else ~mask

    def train_part(self) -> Dataset:
        """The rows the models (and least squares) are fit on: every row but the test rows."""
        if self.test_index is None or len(self.test_index) == 0:
            return self
        keep = self._rows(test=False)
        return replace(
            self, x=np.ascontiguousarray(self.x[keep]), y=np.ascontiguousarray(self.y[keep]), test_index=None
        )

    def test_part(self) -> Dataset | None:
        """The held-out rows, or None without a split."""
        if self.test_index is None or len(self.test_index) == 0:
            return None
        rows = self._rows(test=True)
        return replace(self, x=self.x[rows], y=self.y[rows], test_index=None)


def article_data() -> Dataset:
    """The documented data: x = [-1, 0, 1, 2, 3, 4], y = [-3, -1, 1, 3, 5, 7]."""
    x = np.asarray(ARTICLE_X, dtype=np.float32).reshape(-1, 1)
    y = np.asarray(ARTICLE_Y, dtype=np.float32).reshape(-1, 1)
    return Dataset(x=x, y=y, features=("x",), target="y", source="article")


# --- CSV -----------------------------------------------------------------------------------


def _fail(path: Path, where: str, problem: str) -> InputError:
    return InputError(f"{path}: {where}{problem}")


def _read_rows(path: Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """Header and (line number, cells) of every non-blank row."""
    if not path.is_file():
        what = "is a directory" if path.is_dir() else "no such file"
        raise _fail(path, "", f"{what}; pass --data with a CSV file that has a header line, e.g. x,y")
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            rows = [
                (reader.line_num, [c.strip() for c in row]) for row in reader if any(c.strip() for c in row)
            ]
    except UnicodeDecodeError as exc:
        raise _fail(
            path, "", f"not UTF-8 text ({exc.reason} at byte {exc.start}); save it as UTF-8 CSV"
        ) from None
    except csv.Error as exc:
        raise _fail(path, "", f"not a readable CSV ({exc}); expected comma-separated values") from None
    if not rows:
        raise _fail(
            path, "", "empty file; expected a header line naming the columns (e.g. x,y) and data rows"
        )
    (line, header), body = rows[0], rows[1:]
    _check_delimiter(path, line, header, body)
    if all(_is_number(c) for c in header):
        raise _fail(
            path,
            f"line {line}: ",
            f"no header (the first row {','.join(header)!s} is all numbers); "
            "add a first line naming the columns, e.g. x,y",
        )
    for i, name in enumerate(header):
        if not name:
            raise _fail(
                path, f"line {line}, column {i + 1}: ", "empty column name in the header; name every column"
            )
        if header.index(name) != i:
            raise _fail(
                path,
                f"line {line}, column {i + 1}: ",
                f"duplicate column name {name!r}; names must be unique",
            )
    return header, body


def _check_delimiter(path: Path, line: int, header: list[str], body: list[tuple[int, list[str]]]) -> None:
    """A file separated by ';', tabs or '|' reads as one column per row: say so, with the fix."""
    if len(header) != 1:
        return
    for sep, name in OTHER_DELIMITERS.items():
        if sep in header[0] and all(len(cells) == 1 for _, cells in body[:MAX_REPORTED]):
            columns = [c.strip() for c in header[0].split(sep)]
            decimal = " (with decimal commas, 1,5 -> 1.5)" if sep == ";" else ""
            raise _fail(
                path,
                f"line {line}: ",
                f"the header {header[0]!r} is one column: the file looks separated by {name}, not by "
                f"commas (columns would be {', '.join(columns)}); save it as comma-separated CSV"
                f"{decimal}",
            )


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _select(path: Path, header: list[str], target: str, features: Sequence[str] | None) -> list[int]:
    """Column indices of the features, then the target."""
    columns = ", ".join(header)
    if target not in header:
        raise _fail(path, "", f"no target column {target!r} (columns: {columns}); pass --target NAME")
    if features is None:
        features = [c for c in header if c != target]
    for name in features:
        if name not in header:
            raise _fail(path, "", f"no feature column {name!r} (columns: {columns}); fix --features")
        if name == target:
            raise _fail(
                path, "", f"column {name!r} is the target and cannot also be a feature; fix --features"
            )
    if not features:
        raise _fail(path, "", f"no feature columns besides the target {target!r}; add at least one column")
    if len(set(features)) != len(features):
        raise _fail(path, "", f"--features names a column twice ({', '.join(features)})")
    return [header.index(name) for name in features] + [header.index(target)]


def _cell_problem(text: str) -> tuple[float, str | None]:
    """The cell's value, or why it is not a usable number."""
    if not text:
        return 0.0, "empty cell; every cell must hold a number (fill it or drop the row)"
    try:
        value = float(text)
    except ValueError:
        return 0.0, f"{text!r} is not a number; expected e.g. 1.5 or -2e3"
    if not math.isfinite(value) or abs(value) > _FLOAT32_MAX:
        return (
            0.0,
            f"{text!r} is not a finite float32 number (|v| <= 3.4e38, no NaN/inf); fix or drop the row",
        )
    return value, None


def _parse(path: Path, header: list[str], body: list[tuple[int, list[str]]], used: list[int]) -> np.ndarray:
    """The used columns as float32 (rows, len(used)).

    Every bad cell (and every row of the wrong width) is collected, naming row, line and
    column; one problem is one line, several are one error listing the first `MAX_REPORTED`.
    """
    values = np.empty((len(body), len(used)), dtype=np.float32)
    problems: list[str] = []
    for r, (line, cells) in enumerate(body):
        where = f"row {r + 1} (line {line})"
        if len(cells) != len(header):
            problems.append(
                f"{where}: {len(cells)} cells but the header has {len(header)} columns; "
                "every row needs one value per column"
            )
            continue
        for c, col in enumerate(used):
            values[r, c], problem = _cell_problem(cells[col])
            if problem:
                problems.append(f"{where}, column {header[col]!r}: {problem}")
    if len(problems) == 1:
        raise _fail(path, "", problems[0])
    if problems:
        shown = problems[:MAX_REPORTED]
        more = len(problems) - len(shown)
        raise _fail(
            path,
            "",
            f"{len(problems)} bad cells or rows"
            + (f"; the first {len(shown)}" if more else "")
            + ":\n  "
            + "\n  ".join(shown)
            + (f"\n  ... and {more} more" if more else ""),
        )
    return values


def _check_fit(path: Path, names: Sequence[str], x: np.ndarray) -> None:
    """Enough rows, no constant or linearly dependent features: least squares has one answer."""
    rows, n = x.shape
    if rows < n + 1:
        raise _fail(
            path,
            "",
            f"{rows} data rows for {n} feature(s); need at least {n + 1} "
            "(features + 1) to determine the weights and the bias; add rows or use fewer --features",
        )
    for j, name in enumerate(names):
        if np.all(x[:, j] == x[0, j]):
            raise _fail(
                path,
                f"column {name!r}: ",
                f"constant (every row is {float(x[0, j]):g}); a constant "
                "feature cannot be told apart from the bias; leave it out with --features",
            )
    design = np.hstack([x.astype(np.float64), np.ones((rows, 1))])
    rank = np.linalg.matrix_rank((design - design.mean(0)) / np.where(design.std(0) > 0, design.std(0), 1))
    if n > 1 and rank < n:
        raise _fail(
            path,
            "",
            f"the feature columns {', '.join(names)} are linearly dependent (rank {rank} of {n}); "
            "least squares has no unique answer; leave the redundant column out with --features",
        )


def load_csv(
    path: Path | str, target: str = DEFAULT_TARGET, features: Sequence[str] | None = None
) -> Dataset:
    """Read and validate a CSV with a header: `target` is y, `features` (default: the rest) are x.

    Raises `InputError` naming the file, row (and line) and column of each bad cell (the first
    `MAX_REPORTED`; other problems: the first one), with a hint for a file separated by ';' or
    tabs; nothing is trained or written before this passes.
    """
    path = Path(path)
    header, body = _read_rows(path)
    used = _select(path, header, target, features)
    names = tuple(header[i] for i in used[:-1])
    values = _parse(path, header, body, used)
    x, y = np.ascontiguousarray(values[:, :-1]), np.ascontiguousarray(values[:, -1:])
    _check_fit(path, names, x)
    return Dataset(
        x=x,
        y=y,
        features=names,
        target=target,
        source=str(path),
        file_sha256=sha256_file(path),
        columns=tuple(header),
    )


# --- reference and probe ---------------------------------------------------------------------


def least_squares(data: Dataset) -> tuple[np.ndarray, float]:
    """Ordinary least squares on the data's train rows (float64): weights (n,) and bias."""
    data = data.train_part()
    design = np.hstack([data.x.astype(np.float64), np.ones((len(data.x), 1))])
    coef, *_ = np.linalg.lstsq(design, data.y[:, 0].astype(np.float64), rcond=None)
    return coef[:-1], float(coef[-1])


def headline_input(n_features: int) -> np.ndarray:
    """The article's question, x = 10, as a (1, n) float32 batch (every feature 10)."""
    return np.full((1, n_features), HEADLINE_X, dtype=np.float32)


def probe_rows(points: Sequence[Sequence[float]], n_features: int) -> np.ndarray:
    """`--probe` points as (k, n) rows: a 1-tuple (V,) is V in every feature, an n-tuple is one row."""
    rows = []
    for point in points:
        if len(point) not in (1, n_features):
            raise InputError(
                f"--probe point {':'.join(f'{v:g}' for v in point)} has {len(point)} values; the data "
                f"has {n_features} features: give one value (used for every feature) or {n_features} "
                "separated by ':'"
            )
        rows.append(list(point) * n_features if len(point) == 1 else list(point))
    return np.asarray(rows, dtype=np.float32).reshape(-1, n_features)


def probe_batch(data: Dataset, extra: Sequence[Sequence[float]] = ()) -> np.ndarray:
    """Rows the check compares on: the data's rows, then 0, 10, -1000 and 1000 in every feature,
    then (CSV data) each feature's min - span and max + span, then the `--probe` points."""
    rows = data.x[:MAX_PROBE_ROWS]
    fixed = np.repeat(np.asarray(PROBE_EXTRA, dtype=np.float32)[:, None], data.n_features, axis=1)
    parts = [rows, fixed]
    if data.source != "article":  # beyond this data's own range, whatever its scale
        lo, hi = data.x.min(0).astype(np.float64), data.x.max(0).astype(np.float64)
        parts.append(np.vstack([lo - (hi - lo), hi + (hi - lo)]))
    parts.append(probe_rows(extra, data.n_features))
    return np.vstack(parts).astype(np.float32)


def headline_tolerance_scale(data: Dataset) -> float:
    """What the check's headline bound is multiplied by: max(1, std of the training target) for a CSV
    (a house price's 0.05 is not a line's), 1 for the article's data (its absolute 0.05 stays)."""
    if data.source == "article":
        return 1.0
    return max(1.0, float(np.std(data.train_part().y.astype(np.float64))))


def reference_block(data: Dataset, extra: Sequence[Sequence[float]] = ()) -> tuple[Reference, Probe]:
    """The analytic reference (least squares on the train rows) and the probe batch (every data row
    first), as stored in the record."""
    weights, bias = least_squares(data)
    probe = probe_batch(data, extra).astype(np.float64)
    headline = headline_input(data.n_features).astype(np.float64)
    reference = Reference("least squares (numpy.linalg.lstsq, float64)", tuple(weights.tolist()), float(bias))
    return reference, Probe(
        x=tuple(tuple(row) for row in probe.tolist()),
        reference_y=tuple((probe @ weights + bias).tolist()),
        headline_x=tuple(headline[0].tolist()),
        headline_reference_y=float((headline @ weights + bias)[0]),
        headline_tolerance_scale=headline_tolerance_scale(data),
    )
