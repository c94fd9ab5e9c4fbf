"""The local engine of `python -m serve.batch`: one process streaming chunks through one session.

Memory bound: one chunk at a time. Peak memory is the process's baseline (interpreter,
onnxruntime, pyarrow, the model) plus about 4x `batch_rows` x row width (the chunk as read,
the parsed float64 inputs, the outputs and the part being encoded), plus one CSV read block
(1 MiB); it does not depend on the size of the input (tests/test_batch_local.py measures it).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tqdm import tqdm

from core.errors import IntegrityError
from core.fsio import sha256_file
from serve.batch import parts
from serve.batch.job import BatchJob
from serve.batch.score import score
from serve.batch.source import iter_chunks, parquet_rows
from serve.loader import Model, load

logger = logging.getLogger(__name__)


def open_model(path: str | Path, sha256: str | None, threads: int, selftest: bool = True) -> Model:
    """Load and verify a model: sha256 always; the self-test when the signature has one.

    The loader's self-test covers one float32 input [batch, n]; a model with another signature
    has no stored self-test yet (the any-model issue), which is logged, not ignored silently.
    """
    model = load(path, selftest=False, verify_sha256=True, threads=threads)
    if sha256 is not None and (actual := sha256_file(Path(path))) != sha256:
        raise IntegrityError(
            f"{path}: sha256 {actual} != the job's {sha256}; the model changed after the "
            "job started; re-run the job"
        )
    if selftest and model.n_features is not None:
        model.selftest()
    elif selftest:
        logger.warning(
            "%s: no self-test for a model with inputs %s; sha256 verified only",
            path,
            [i["name"] for i in model.signature["inputs"]],
        )
    return model


def process_file(
    model: Any,
    job: BatchJob,
    file_index: int,
    first: int = 0,
    stop: int | None = None,
    progress: Callable[[int], None] = lambda n: None,
) -> tuple[list[dict], int]:
    """Score chunks first..stop-1 of one input file into parts, skipping committed ones.

    Returns (the part manifests, rows read). Used by the local engine and by each Dask task.
    """
    out, file = Path(job.output), job.files[file_index]
    metas, rows = [], 0
    for chunk, table in iter_chunks(file, job.plan.read_columns, job.batch_rows, first, stop):
        first_row = chunk * job.batch_rows
        meta = parts.done(out, file_index, chunk, job.fmt)
        if meta is None or meta["rows"] != [first_row, first_row + table.num_rows]:
            result, skipped = score(model, job.plan, table, job.fmt, job.on_error, file.path, first_row)
            meta = parts.write_part(
                out, file_index, chunk, job.fmt, file.path, first_row, table.num_rows, result, skipped
            )
        metas.append(meta)
        rows += table.num_rows
        progress(table.num_rows)
    return metas, rows


def model_facts(job: BatchJob) -> dict:
    return {"name": job.model_name, "path": job.model_path, "sha256": job.model_sha256}


def run_local(job: BatchJob, model: Model | None = None, quiet: bool = False) -> dict:
    """Score every file in order in this process; returns the final manifest."""
    if model is None:
        model = open_model(job.model_path, job.model_sha256, job.threads, job.selftest)
    known = [parquet_rows(f) if f.kind == "parquet" else None for f in job.files]
    total = None if None in known else sum(known)
    bar = tqdm(
        total=total,
        unit=" rows",
        unit_scale=True,
        file=sys.stderr,
        disable=quiet or not sys.stderr.isatty(),
        desc="scoring",
    )
    metas, rows = [], {}
    with bar:
        for index in range(len(job.files)):
            file_metas, rows[index] = process_file(model, job, index, progress=bar.update)
            metas += file_metas
    return parts.finish(Path(job.output), job.identity(), metas, model_facts(job), rows)
