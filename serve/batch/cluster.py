"""The Dask engine of `python -m serve.batch`: `--scheduler tcp://HOST:PORT` or `--workers N`.

The client plans tasks (Parquet: one output part of a file each, `--part-rows` rows, from
its footer, so every task of a file but its last does equal work; CSV: one file each),
broadcasts the model's bytes once, and each task writes its parts into the shared output
directory exactly as the local engine would (same names, same bytes). Each worker process
verifies the bytes' sha256 (with `--trust-key`: against the digest the signature covers)
and the self-test once and caches the session by sha256. A task lost with its worker is
recomputed by the scheduler; parts are committed atomically, so a recomputed part replaces
nothing but an identical copy.
Workers need this package importable and the input and output paths visible (a shared
filesystem); README "Batch scoring" says what changes on Kubernetes or Slurm.
"""

from __future__ import annotations

import hashlib
import logging
import math
import tempfile
from pathlib import Path

import pyarrow.parquet as pq

from oneneuron.errors import InputError, IntegrityError
from oneneuron.signing import SignatureError
from serve.batch import parts
from serve.batch.job import BatchJob
from serve.batch.local import model_facts, open_model, process_file, progress_bar
from serve.batch.source import parquet_rows
from serve.loader import Model

logger = logging.getLogger(__name__)

_SESSIONS: dict[str, Model] = {}  # in each worker process: sha256 -> verified model


def worker_model(model_bytes: bytes, job: BatchJob) -> Model:
    """This worker's verified session for the job's model, loaded on first use."""
    model = _SESSIONS.get(job.model_sha256)
    if model is not None:
        return model
    digest = hashlib.sha256(model_bytes).hexdigest()
    if digest != job.model_sha256 and job.signed_by is not None:
        raise SignatureError(
            f"{job.model_path}: the bytes this worker received hash to {digest[:12]}, not the digest "
            f"{job.model_sha256[:12]} signed by key {job.signed_by[:16]}: changed after signing; "
            "re-run python -m export.all and sign again"
        )
    if digest != job.model_sha256:
        raise IntegrityError(f"model bytes received by the worker hash to {digest}, not {job.model_sha256}")
    path = Path(tempfile.mkdtemp(prefix="serve-batch-")) / f"{job.model_sha256[:12]}.onnx"
    path.write_bytes(model_bytes)
    model = open_model(path, job.model_sha256, job.threads, job.selftest)
    _SESSIONS[job.model_sha256] = model
    return model


def score_partition(model_bytes: bytes, job: BatchJob, file_index: int, first: int, stop: int | None):
    """One Dask task: parts first..stop-1 of one file -> committed parts.

    Returns (metas, rows, the worker's address)."""
    from distributed import get_worker

    metas, rows = process_file(worker_model(model_bytes, job), job, file_index, first, stop)
    return metas, rows, get_worker().address


def partitions(job: BatchJob, parts_per_task: int = 1) -> list[tuple[int, int, int | None]]:
    """(file index, first part, stop part) per task, in input order."""
    out: list[tuple[int, int, int | None]] = []
    for index, file in enumerate(job.files):
        if file.kind == "csv":
            out.append((index, 0, None))  # CSV has no row index: a task reads the whole file
            continue
        meta = pq.ParquetFile(file.path).metadata
        largest = max((meta.row_group(g).num_rows for g in range(meta.num_row_groups)), default=0)
        if largest > job.part_rows:
            logger.warning(
                "%s: row groups of up to %d rows > --part-rows %d: each task decodes its row group from "
                "the start; write the file with row groups of at most --part-rows rows for even tasks",
                file.path, largest, job.part_rows,
            )  # fmt: skip
        n = math.ceil(meta.num_rows / job.part_rows)
        out += [(index, c, min(c + parts_per_task, n)) for c in range(0, n, parts_per_task)]
    return out


def connect(scheduler: str | None, workers: int | None):
    """A Client on `scheduler`, or on a new local cluster of `workers` one-thread processes."""
    from distributed import Client, LocalCluster

    if scheduler is None:
        cluster = LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
            silence_logs=logging.WARNING,
        )
        return Client(cluster), cluster
    try:
        return Client(scheduler, timeout=10), None
    except (OSError, TimeoutError, ValueError) as exc:
        raise InputError(
            f"--scheduler {scheduler}: cannot connect ({str(exc)[:200]}); start one with "
            "`dask scheduler` or pass --workers N for a local cluster"
        ) from None


def run_cluster(job: BatchJob, scheduler: str | None, workers: int | None, quiet: bool = False) -> dict:
    """Score every partition on the cluster; returns the final manifest (written by the client)."""
    from distributed import as_completed

    model_bytes = Path(job.model_path).read_bytes()
    if hashlib.sha256(model_bytes).hexdigest() != job.model_sha256:
        error = SignatureError if job.signed_by else IntegrityError
        raise error(f"{job.model_path}: changed since it was verified; run the job again")
    client, cluster = connect(scheduler, workers)
    try:
        n_workers = len(client.scheduler_info(n_workers=-1)["workers"])
        if n_workers == 0:
            client.wait_for_workers(1, timeout=30)
        logger.info("dask: %d workers at %s", max(n_workers, 1), client.scheduler.address)
        shared = client.scatter(model_bytes, broadcast=True, hash=False)
        tasks = partitions(job)
        futures = [
            client.submit(score_partition, shared, job, i, first, stop, pure=False, retries=2)
            for i, first, stop in tasks
        ]
        metas, rows, by_worker = [], {}, {}
        total = None if any(f.kind == "csv" for f in job.files) else sum(parquet_rows(f) for f in job.files)
        with progress_bar(total, "scoring (dask)", quiet) as bar:
            for future, (task_metas, task_rows, worker) in as_completed(futures, with_results=True):
                index = task_metas[0]["file_index"] if task_metas else None
                if index is not None:
                    rows[index] = rows.get(index, 0) + task_rows
                metas += task_metas
                by_worker[worker] = by_worker.get(worker, 0) + task_rows
                bar.update(task_rows)
                future.release()
        logger.info("dask: rows scored per worker: %s", by_worker)
        final = parts.finish(Path(job.output), job.identity(), metas, model_facts(job), rows)
        return final | {"rows_per_worker": by_worker}  # for the summary line, not in _manifest.json
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
