"""One output part of `python -m serve.batch`, written as its tables arrive and hashed while written.

A part holds many tables of at most `--batch-rows` rows (Parquet: one row group each; CSV: one
header), so only two tables are in memory at a time however large the part: one is encoded and
written on a helper thread (pyarrow releases the GIL) while the next batch is read and scored.
The bytes go to a temporary name in the output directory through a file object that feeds
sha256 as it writes, so committing a part never reads it back. `commit()` renames it into
place; the part's manifest, written next, is the commit point (serve/batch/parts.py).

Durability (the fsync policy): a part is not fsynced when committed. `--resume` trusts a part
only when its bytes hash to its manifest's sha256, so a part lost or torn by a power cut is
recomputed, never kept; a SIGKILL loses nothing that was renamed. Before the final
`_manifest.json` says the job is done, every part and manifest is fsynced (`parts.finish`).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import queue
import tempfile
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

PARQUET_COMPRESSION = "snappy"
_BUFFER = 1 << 20  # bytes pyarrow buffers per write(2) and per block hashed
_QUEUED = 8  # blocks written but not yet hashed, at most (8 MiB)


class _HashingFile:
    """The binary file pyarrow writes to (through a 1 MiB `pa.BufferedOutputStream`, so ~1 MiB per
    call): every block is written, then hashed by a helper thread while pyarrow encodes the next
    one (hashlib releases the GIL), so sha256 costs the part almost no wall time. The blocks are
    `bytes` copies, safe to hash after `write` returns; at most `_QUEUED` of them wait."""

    def __init__(self, fd: int):
        self._f = os.fdopen(fd, "wb", buffering=0)  # the descriptor mkstemp created: never reopened by name
        self._sha = hashlib.sha256()
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=_QUEUED)
        self._hasher = threading.Thread(target=self._hash, name="part-sha256", daemon=True)
        self._hasher.start()
        self._pos = 0
        self.closed = False

    def _hash(self) -> None:
        while (block := self._queue.get()) is not None:
            self._sha.update(block)

    def write(self, data: bytes) -> int:
        view = memoryview(data)
        while view:  # a raw file may take fewer bytes than given
            view = view[self._f.write(view) :]
        self._queue.put(data)
        self._pos += len(data)
        return len(data)

    def tell(self) -> int:
        return self._pos

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def flush(self) -> None:
        pass

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._queue.put(None)
            self._hasher.join()
            self._f.close()

    def hexdigest(self) -> str:
        return self._sha.hexdigest()


class PartWriter:
    """Write one part table by table; `commit()` returns its sha256 once it is at `path`."""

    def __init__(self, path: Path, fmt: str):
        self.path, self.fmt = Path(path), fmt
        # an unpredictable name created exclusively (O_EXCL: a planted symlink is never followed),
        # written through the descriptor that created it
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp")
        self._tmp = Path(tmp)
        os.fchmod(fd, 0o644)  # mkstemp makes 0600; parts are read by other tools and users
        self._file = _HashingFile(fd)
        self._sink = pa.BufferedOutputStream(pa.PythonFile(self._file, mode="w"), _BUFFER)
        self._writer: pq.ParquetWriter | pacsv.CSVWriter | None = None
        self._empty: pa.Table | None = None  # a first table with no rows (every row skipped)
        self._encoder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="part-writer")
        self._pending: Future | None = None  # the table being encoded and written
        self.rows = 0

    def write(self, table: pa.Table) -> None:
        if table.num_rows == 0:  # nothing to write; keep its schema in case the whole part is empty
            self._empty = self._empty or table
            return
        if self._writer is None:
            self._open(table.schema)
        elif table.schema != self._writer.schema:
            table = table.cast(self._writer.schema)  # same columns; types fixed by the first table
        self._wait()  # at most one table in flight: one more batch in memory, no more
        self._pending = self._encoder.submit(self._writer.write_table, table)
        self.rows += table.num_rows

    def _wait(self) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            pending.result()  # an encoding or disk error surfaces here, in the scoring thread

    def _open(self, schema: pa.Schema) -> None:
        if self.fmt == "parquet":
            self._writer = pq.ParquetWriter(self._sink, schema, compression=PARQUET_COMPRESSION)
        else:
            self._writer = pacsv.CSVWriter(self._sink, schema)

    def commit(self) -> str:
        """Close the part and rename it into place; returns the sha256 of its bytes."""
        self._wait()
        self._encoder.shutdown()
        if self._writer is None:  # an empty part: a valid file with the columns and no rows
            self._open(self._empty.schema if self._empty is not None else pa.schema([]))
            if self._empty is not None and self.fmt == "csv":
                self._writer.write_table(self._empty)
        self._writer.close()
        self._sink.close()  # flushes, then closes the hashing file
        self._file.close()
        os.replace(self._tmp, self.path)
        return self._file.hexdigest()

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            self._wait()
        self._encoder.shutdown()
        with contextlib.suppress(Exception):
            if self._writer is not None:
                self._writer.close()
        with contextlib.suppress(Exception):
            self._sink.close()
        self._file.close()
        with contextlib.suppress(FileNotFoundError):
            self._tmp.unlink()

    def __enter__(self) -> PartWriter:
        return self

    def __exit__(self, kind, value, tb) -> None:
        if kind is not None:
            self.abort()
