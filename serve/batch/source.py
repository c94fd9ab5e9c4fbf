"""Input for `python -m serve.batch`: CSV or Parquet files, read as fixed-size chunks.

A part is `part_rows` consecutive rows of one file (the last one shorter), whatever the
reader's own batching, so part `k` of a file always holds rows [k * part_rows, ...): the unit
of output files, resume and Dask tasks. It is read as tables of at most `batch_rows` rows.
CSV columns are read as text (cells are parsed when scored, so one bad cell is reported with
its row instead of failing the reader).
"""

from __future__ import annotations

import glob
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from oneneuron.errors import InputError

logger = logging.getLogger(__name__)

SUFFIXES = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
CSV_BLOCK = 1 << 20  # bytes per CSV read block: part of the memory bound


@dataclass(frozen=True)
class InputFile:
    """One input file and its identity (a changed file makes `--resume` refuse)."""

    path: str
    kind: str  # "csv" or "parquet"
    size: int
    mtime_ns: int

    def identity(self) -> dict:
        return {"path": self.path, "kind": self.kind, "size": self.size, "mtime_ns": self.mtime_ns}


def resolve_inputs(spec: str) -> list[InputFile]:
    """The files named by `--input`: one file, a directory (its *.csv / *.parquet) or a glob, sorted."""
    path = Path(spec)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in SUFFIXES and p.is_file())
        where = f"directory {spec}"
    elif path.is_file():
        files = [path]
        where = spec
    elif any(c in spec for c in "*?["):
        files = sorted(Path(p) for p in glob.glob(spec) if Path(p).is_file())
        where = f"glob {spec}"
    else:
        raise InputError(f"--input {spec}: no such file, directory or glob match; pass a CSV or Parquet path")
    files = [f for f in files if not f.name.startswith((".", "_"))]
    if not files:
        raise InputError(f"--input {where}: no .csv or .parquet files; pass a file, a directory or a glob")
    kinds = {SUFFIXES.get(f.suffix.lower()) for f in files}
    if None in kinds:
        bad = next(f for f in files if f.suffix.lower() not in SUFFIXES)
        raise InputError(f"--input {bad}: unknown file type {bad.suffix!r}; expected .csv or .parquet")
    if len(kinds) > 1:
        raise InputError(f"--input {where}: mixes CSV and Parquet; score them in separate jobs")
    out = []
    for f in files:
        st = f.stat()
        out.append(InputFile(str(f.resolve()), SUFFIXES[f.suffix.lower()], st.st_size, st.st_mtime_ns))
    return out


def column_types(file: InputFile) -> dict[str, pa.DataType]:
    """The file's columns and their types (CSV: its header line, every column text); a column
    name given twice is refused, naming it (a column is looked up by name)."""
    try:
        if file.kind == "parquet":
            schema = pq.read_schema(file.path)
        else:
            header_only = pacsv.ParseOptions(invalid_row_handler=lambda row: "skip")  # lines: when scored
            with pacsv.open_csv(
                file.path, read_options=pacsv.ReadOptions(block_size=CSV_BLOCK), parse_options=header_only
            ) as reader:
                schema = pa.schema([(name, pa.string()) for name in reader.schema.names])
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(f"{file.path}: not a readable {file.kind} file ({str(exc)[:200]})") from None
    seen: set[str] = set()
    for name in schema.names:
        if name in seen:
            raise InputError(
                f"{file.path}: column {name!r} appears {schema.names.count(name)} times; give each "
                "column a unique name (rename or drop the copies) and run the job again"
            )
        seen.add(name)
    return {name: schema.field(name).type for name in schema.names}


def column_names(file: InputFile) -> list[str]:
    """The file's column names (CSV: its header line), each once."""
    return list(column_types(file))


def parquet_rows(file: InputFile) -> int:
    """Row count from the Parquet footer (no data read)."""
    return pq.ParquetFile(file.path).metadata.num_rows


def _csv_batches(file: InputFile, columns: list[str], ragged: list[dict] | None) -> Iterator[pa.RecordBatch]:
    """Text columns; with `ragged` (--on-error skip) a line with the wrong number of fields is
    dropped and appended to it as {"line", "reason"} instead of stopping the reader."""
    names = column_names(file)
    convert = pacsv.ConvertOptions(
        column_types={c: pa.string() for c in names}, include_columns=columns, strings_can_be_null=False
    )
    parse = pacsv.ParseOptions()
    if ragged is not None:

        def skip_line(row) -> str:
            text = row.text if len(row.text) <= 80 else row.text[:77] + "..."
            ragged.append(
                {
                    "line": row.number,  # 1-based physical line, the header being line 1 (None: unknown)
                    "column": None,
                    "reason": f"{row.actual_columns} fields, expected {row.expected_columns}: {text!r}",
                }
            )
            return "skip"

        parse = pacsv.ParseOptions(invalid_row_handler=skip_line)
    reader = pacsv.open_csv(
        file.path,
        read_options=pacsv.ReadOptions(block_size=CSV_BLOCK, use_threads=False),
        parse_options=parse,
        convert_options=convert,
    )
    with reader:
        yield from reader


def _parquet_batches(
    file: InputFile, columns: list[str], batch_rows: int, start: int, stop: int | None
) -> Iterator[pa.RecordBatch]:
    """Batches covering rows [start, stop), reading only the row groups that overlap them."""
    pf = pq.ParquetFile(
        file.path, pre_buffer=False
    )  # pre_buffer reads ahead without bound (+180 MB at 4M rows)
    groups, first_row, offset = [], None, 0
    for i in range(pf.metadata.num_row_groups):
        n = pf.metadata.row_group(i).num_rows
        if offset + n > start and (stop is None or offset < stop):
            groups.append(i)
            first_row = offset if first_row is None else first_row
        offset += n
    if not groups:
        return
    skip = start - first_row
    for batch in pf.iter_batches(batch_size=batch_rows, row_groups=groups, columns=columns):
        if skip >= batch.num_rows:
            skip -= batch.num_rows
            continue
        if skip:
            batch, skip = batch.slice(skip), 0
        yield batch


def iter_batches(
    file: InputFile,
    columns: list[str],
    batch_rows: int,
    part_rows: int,
    first: int = 0,
    stop: int | None = None,
    ragged: list[dict] | None = None,
) -> Iterator[tuple[int, int, pa.Table]]:
    """Yield (part, first file row, table of `columns`) for parts first..stop-1 of `file`, in order.

    Part k is rows [k * part_rows, (k + 1) * part_rows) of the file; its tables hold at most
    `batch_rows` rows each and never cross a part boundary, so one part's tables are consecutive.
    """
    if file.kind == "parquet":
        row = first * part_rows
        batches = _parquet_batches(file, columns, batch_rows, row, None if stop is None else stop * part_rows)
    else:
        batches, row = _csv_batches(file, columns, ragged), 0  # CSV has no index: read from the top
    pending: list[pa.RecordBatch] = []
    have = 0

    def limit() -> int:  # rows the pending table may still take: the batch size or the part's end
        return min(batch_rows, (row // part_rows + 1) * part_rows - row)

    try:
        for batch in batches:
            while batch.num_rows:
                take = min(limit() - have, batch.num_rows)
                pending.append(batch.slice(0, take))
                have += take
                batch = batch.slice(take)
                if have == limit():
                    if row // part_rows >= first:
                        yield row // part_rows, row, pa.Table.from_batches(pending)
                    row, pending, have = row + have, [], 0
                    if stop is not None and row // part_rows >= stop:
                        return
        if have and row // part_rows >= first:
            yield row // part_rows, row, pa.Table.from_batches(pending)
    except pa.ArrowInvalid as exc:  # a ragged CSV line (--on-error fail), a corrupt Parquet page
        raise InputError(
            f"{file.path}: cannot read part {row // part_rows} (rows from {row}): {str(exc)[:300]}; "
            + ("fix or remove the file" if file.kind == "parquet" else "fix the line or pass --on-error skip")
        ) from None
