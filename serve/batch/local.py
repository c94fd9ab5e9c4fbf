"""The local engine of `python -m serve.batch`: one process streaming chunks through one session.

Memory bound: one batch at a time. Peak memory is the process's baseline (interpreter,
onnxruntime, pyarrow, the model) plus about 5x `batch_rows` x row width (the batch as read,
parsed inputs, the outputs, and the previous batch's row group being encoded on the writer's
thread), plus one CSV read block (1 MiB), the writer's 1 MiB buffer and up to 8 MiB queued for
hashing; it depends on neither the input's size nor `--part-rows`
(a part is written row group by row group; tests/test_batch_local.py measures it).
"""

from __future__ import annotations

import itertools
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from oneneuron.errors import InputError
from serve.batch import parts
from serve.batch.job import BatchJob
from serve.batch.score import score
from serve.batch.source import iter_batches, parquet_rows
from serve.batch.verify import read_verified
from serve.loader import Model

logger = logging.getLogger(__name__)


def process_file(
    model: Any,
    job: BatchJob,
    file_index: int,
    first: int = 0,
    stop: int | None = None,
    progress: Callable[[int], None] = lambda n: None,
) -> tuple[list[dict], int]:
    """Score parts first..stop-1 of one input file, skipping committed ones.

    Returns (the part manifests, rows read). Used by the local engine and by each Dask task.
    """
    out, file = Path(job.output), job.files[file_index]
    ragged: list[dict] | None = [] if job.on_error == "skip" and file.kind == "csv" else None
    batches = iter_batches(file, job.plan.read_columns, job.batch_rows, job.part_rows, first, stop, ragged)
    metas, rows = [], 0
    for part, group in itertools.groupby(batches, key=lambda b: b[0]):
        meta, writer, skipped, first_row, rows_in = (
            parts.done(out, file_index, part, job.fmt),
            None,
            [],
            None,
            0,
        )
        try:
            for _, row, table in group:
                first_row = row if first_row is None else first_row
                if ragged:  # lines the reader dropped while reading up to here
                    skipped += ragged
                    ragged.clear()
                if meta is None:
                    writer = writer or parts.open_part(out, file_index, part, job.fmt)
                    result, bad = score(model, job, table, file.path, row)
                    writer.write(result)
                    skipped += bad
                rows_in += table.num_rows
                progress(table.num_rows)
            if ragged:  # dropped lines reported while this part's last block was parsed
                skipped += ragged
                ragged.clear()
            if meta is None:
                meta = parts.commit_part(
                    out, writer, file_index, part, file.path, first_row, rows_in, skipped
                )
            elif meta["rows"] != [first_row, first_row + rows_in]:
                raise InputError(
                    f"--output {out}: {meta['part']} holds rows {meta['rows']} of {file.path}, which now has "
                    f"rows [{first_row}, {first_row + rows_in}) there; rerun with --overwrite"
                )
        except BaseException:
            if writer is not None:
                writer.abort()
            raise
        metas.append(meta)
        rows += rows_in
    if ragged:
        raise InputError(f"{file.path}: no line has the header's number of fields; fix the file or remove it")
    return metas, rows


class _NoBar:
    def __enter__(self) -> _NoBar:
        return self

    def __exit__(self, *exc) -> None:
        pass

    def update(self, n: int) -> None:
        pass


def progress_bar(total: int | None, desc: str, quiet: bool):
    """A tqdm bar on stderr (rows, rows/s, ETA), or nothing when quiet or stderr is not a terminal."""
    if quiet or not sys.stderr.isatty():
        return _NoBar()
    from tqdm import tqdm  # imported only for a bar: ~40 ms of start-up otherwise

    return tqdm(total=total, unit=" rows", unit_scale=True, file=sys.stderr, desc=desc)


def model_facts(job: BatchJob) -> dict:
    """What the final manifest says about the model (a variant names its parent: whose scores these
    approximate)."""
    facts = {"name": job.model_name, "path": job.model_path, "sha256": job.model_sha256}
    if job.variant_of is not None:
        facts |= {"variant_of": job.variant_of, "variant_method": job.variant_method}
    return facts | ({"signed_by": job.signed_by} if job.signed_by else {})


def run_local(job: BatchJob, model: Model | None = None, quiet: bool = False) -> dict:
    """Score every file in order in this process; returns the final manifest."""
    if model is None:  # self-tested on the probe rows the job read, if any
        model = read_verified(
            job.model_path, job.model_sha256, job.signed_by, job.threads, rows=job.selftest_rows
        ).model
    known = [parquet_rows(f) if f.kind == "parquet" else None for f in job.files]
    total = None if None in known else sum(known)
    bar = progress_bar(total, "scoring", quiet)
    metas, rows = [], {}
    with bar:
        for index in range(len(job.files)):
            file_metas, rows[index] = process_file(model, job, index, progress=bar.update)
            metas += file_metas
    return parts.finish(Path(job.output), job.identity(), metas, model_facts(job), rows)
