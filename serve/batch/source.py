"""Input for `python -m serve.batch`: CSV or Parquet files, read as fixed-size chunks.

A chunk is `batch_rows` consecutive rows of one file (the last one shorter), whatever the
reader's own batching, so chunk `k` of a file always holds rows [k * batch_rows, ...): the
unit of output parts, resume and Dask partitions. CSV columns are read as text (cells are
parsed when scored, so one bad cell is reported with its row instead of failing the reader).
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

from core.errors import InputError

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


def column_names(file: InputFile) -> list[str]:
    """The file's column names (CSV: its header line)."""
    try:
        if file.kind == "parquet":
            return list(pq.read_schema(file.path).names)
        with pacsv.open_csv(file.path, read_options=pacsv.ReadOptions(block_size=CSV_BLOCK)) as reader:
            return list(reader.schema.names)
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(f"{file.path}: not a readable {file.kind} file ({str(exc)[:200]})") from None


def parquet_rows(file: InputFile) -> int:
    """Row count from the Parquet footer (no data read)."""
    return pq.ParquetFile(file.path).metadata.num_rows


def _csv_batches(file: InputFile, columns: list[str]) -> Iterator[pa.RecordBatch]:
    names = column_names(file)
    convert = pacsv.ConvertOptions(
        column_types={c: pa.string() for c in names}, include_columns=columns, strings_can_be_null=False
    )
    reader = pacsv.open_csv(
        file.path, read_options=pacsv.ReadOptions(block_size=CSV_BLOCK), convert_options=convert
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


def iter_chunks(
    file: InputFile, columns: list[str], batch_rows: int, first: int = 0, stop: int | None = None
) -> Iterator[tuple[int, pa.Table]]:
    """Yield (chunk index, table of `columns`) for chunks first..stop-1 of `file`, in order."""
    if file.kind == "parquet":
        batches = _parquet_batches(
            file, columns, batch_rows, first * batch_rows, None if stop is None else stop * batch_rows
        )
        index = first
    else:
        batches, index = _csv_batches(file, columns), 0  # CSV has no index: read from the top
    pending: list[pa.RecordBatch] = []
    have = 0
    try:
        for batch in batches:
            while batch.num_rows:
                take = min(batch_rows - have, batch.num_rows)
                pending.append(batch.slice(0, take))
                have += take
                batch = batch.slice(take)
                if have == batch_rows:
                    if index >= first:
                        yield index, pa.Table.from_batches(pending)
                    index, pending, have = index + 1, [], 0
                    if stop is not None and index >= stop:
                        return
        if have and index >= first:
            yield index, pa.Table.from_batches(pending)
    except pa.ArrowInvalid as exc:  # a ragged CSV line, a corrupt Parquet page
        raise InputError(
            f"{file.path}: cannot read chunk {index} (rows from {index * batch_rows}): {str(exc)[:300]}; "
            "fix or remove the file"
        ) from None
