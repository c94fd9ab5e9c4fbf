"""The Dask engine of `python -m serve.batch`: `--scheduler tls://HOST:PORT` or `--workers N`.

The client plans tasks (Parquet: one output part of a file each, `--part-rows` rows, from
its footer, so every task of a file but its last does equal work; CSV: one file each),
broadcasts the model's verified bytes once, and each task writes its parts into the shared output
directory exactly as the local engine would (same names, same bytes). Each worker process
verifies the bytes' sha256 (with `--trust-key`: against the digest the signature covers),
builds its session from them (no file), runs the self-test once and caches the session by
sha256. A task lost with its worker is recomputed by the scheduler; parts are committed
atomically, so a recomputed part replaces nothing but an identical copy.

A Dask scheduler runs whatever its clients submit, as the workers' user: the local cluster of
`--workers` speaks TLS with a CA made for this job alone (`distributed.Security.temporary()`),
so no other process can connect; `--scheduler tls://` takes the cluster's CA and a client
certificate; a plain `tcp://` scheduler is used with a warning saying what it allows.
Workers need this package importable and the input and output paths visible (a shared
filesystem); README "Batch scoring" says what changes on Kubernetes or Slurm.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from oneneuron.errors import InputError
from serve.batch import parts
from serve.batch.job import BatchJob
from serve.batch.local import model_facts, process_file, progress_bar
from serve.batch.source import parquet_rows
from serve.batch.verify import check_bytes, session
from serve.loader import Model

logger = logging.getLogger(__name__)

_SESSIONS: dict[str, Model] = {}  # in each worker process: sha256 -> verified model
TLS_FLAGS = ("--tls-ca-file", "--tls-cert", "--tls-key")
_TLS_FIX = (
    "--scheduler tls://HOST:PORT with --tls-ca-file (the cluster's CA), --tls-cert and --tls-key "
    "(this client's certificate and key)"
)


@dataclass(frozen=True)
class ClusterConfig:
    """Where a Dask job runs and how it proves who it is there; checked when made."""

    scheduler: str | None = None  # tls://HOST:PORT or tcp://HOST:PORT; None: a local cluster
    workers: int | None = None  # the local cluster's one-thread worker processes
    tls_ca_file: str | None = None  # PEM: the CA that signed the scheduler's and workers' certificates
    tls_cert: str | None = None  # PEM: this client's certificate, signed by that CA
    tls_key: str | None = None  # PEM: its private key

    def __post_init__(self) -> None:
        files = dict(zip(TLS_FLAGS, (self.tls_ca_file, self.tls_cert, self.tls_key), strict=True))
        given = [flag for flag, value in files.items() if value is not None]
        if given and len(given) < 3:
            missing = [flag for flag in TLS_FLAGS if flag not in given]
            raise InputError(
                f"{', '.join(given)} without {', '.join(missing)}: give all three of "
                f"{', '.join(TLS_FLAGS)} (for a tls:// --scheduler) or none"
            )
        if given and self.scheduler is None:
            raise InputError(
                f"{', '.join(TLS_FLAGS)} are for a tls:// --scheduler; the local cluster of --workers "
                "makes its own throwaway certificates: drop them"
            )
        if self.scheduler is not None and self.tls and not given:
            raise InputError(f"--scheduler {self.scheduler}: a TLS scheduler needs {_TLS_FIX}")
        if given and not self.tls:
            raise InputError(
                f"--scheduler {self.scheduler}: not a tls:// address, but {', '.join(TLS_FLAGS)} are "
                "given; pass the scheduler's tls:// address"
            )
        for flag, value in files.items():
            if value is not None and not Path(value).is_file():
                raise InputError(f"{flag} {value}: no such file; pass a PEM file")

    @property
    def tls(self) -> bool:
        return self.scheduler is None or self.scheduler.startswith("tls://")

    def security(self):
        """The distributed.Security the client (and a local cluster) uses; None: plain TCP (warned)."""
        from distributed import Security

        if self.scheduler is None:
            return Security.temporary()  # a CA and a certificate that exist only in this process
        if self.tls:
            return Security(
                tls_ca_file=self.tls_ca_file,
                tls_client_cert=self.tls_cert,
                tls_client_key=self.tls_key,
                require_encryption=True,
            )
        logger.warning(
            "warning: --scheduler %s is plain TCP, without authentication or encryption: any local or "
            "network process that reaches it can run code as the workers' user (and read the model "
            "and the data); use %s",
            self.scheduler, _TLS_FIX,
        )  # fmt: skip
        return None


def worker_model(model_bytes: bytes, job: BatchJob) -> Model:
    """This worker's session for the job's model, built from the bytes it received once they hash
    to the job's verified digest; cached by digest. No file is written or opened."""
    model = _SESSIONS.get(job.model_sha256)
    if model is not None:
        return model
    check_bytes(model_bytes, job.model_sha256, job.signed_by, f"{job.model_path} (on a Dask worker)")
    model = session(
        model_bytes, job.model_sha256, job.model_path, job.threads, job.selftest, job.selftest_rows
    )
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


def connect(config: ClusterConfig):
    """(Client, local cluster or None, security): a Client on `config.scheduler`, or on a new local
    cluster of `config.workers` one-thread processes that only holders of its throwaway CA reach."""
    from distributed import Client, LocalCluster

    security = config.security()
    if config.scheduler is None:
        import dask

        # The scheduler and the workers also listen for plain HTTP (their dashboard port, even with
        # no dashboard): its default routes show any local process the workers, their logs and
        # call stacks, and metrics. No route: every request is answered 404.
        no_routes = {"distributed.scheduler.http.routes": [], "distributed.worker.http.routes": []}
        with dask.config.set(no_routes):  # nannies keep this config for the workers they (re)start
            cluster = LocalCluster(
                n_workers=config.workers,
                threads_per_worker=1,
                processes=True,
                host="127.0.0.1",
                dashboard_address=None,
                silence_logs=logging.WARNING,
                security=security,
            )
        assert cluster.scheduler_address.startswith("tls://"), cluster.scheduler_address
        return Client(cluster, security=security), cluster, security
    try:
        return Client(config.scheduler, timeout=10, security=security), None, security
    except (OSError, TimeoutError, ValueError, TypeError) as exc:
        raise InputError(
            f"--scheduler {config.scheduler}: cannot connect ({str(exc)[:200]}); check the address"
            + (" and the TLS files" if config.tls else "")
            + ", start one with `dask scheduler`, or pass --workers N for a local cluster"
        ) from None


def run_cluster(
    job: BatchJob,
    model_bytes: bytes,
    config: ClusterConfig,
    quiet: bool = False,
    on_ready: Callable[[str, Any], None] | None = None,
) -> dict:
    """Score every partition on the cluster; returns the final manifest (written by the client).

    `model_bytes` are the verified bytes the job checked (serve/batch/verify.py); each worker
    checks them again. `on_ready(scheduler address, security)` is called once the workers are
    there, before any task is submitted (tests probe the cluster from it)."""
    from distributed import as_completed

    check_bytes(model_bytes, job.model_sha256, job.signed_by, job.model_path)
    client, cluster, security = connect(config)
    try:
        n_workers = len(client.scheduler_info(n_workers=-1)["workers"])
        if n_workers == 0:
            client.wait_for_workers(1, timeout=30)
        address = client.scheduler.address
        how = "TLS, a throwaway CA" if cluster is not None else "TLS" if security is not None else "plain TCP"
        logger.info("dask: %d workers at %s (%s)", max(n_workers, 1), address, how)
        if on_ready is not None:
            on_ready(address, security)
        shared = client.scatter(model_bytes, broadcast=True, hash=False)
        shared_job = client.scatter(job, broadcast=True, hash=False)  # with its self-test rows: once
        tasks = partitions(job)
        futures = [
            client.submit(score_partition, shared, shared_job, i, first, stop, pure=False, retries=2)
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
