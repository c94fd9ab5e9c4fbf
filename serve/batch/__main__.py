"""`python -m serve.batch --model NAME --input PATH --output DIR`: score files too large for a request.

Local by default (one streaming process); `--scheduler tls://HOST:PORT` (with the cluster's CA and
a client certificate) runs the same job on a Dask cluster, `--workers N` on a local one that
speaks TLS with a throwaway CA. See README "Batch scoring" and docs/batch.md.

Inputs of any shape: an input [rows] or [rows, n] reads one column per value; any other (an image
[rows, 3, 96, 96], token ids [rows, seq]) reads one column holding each row's tensor as nested
lists (Parquet list / fixed_size_list, CSV JSON text). Rows whose sequences differ in length (a
dimension the model declares dynamic) are grouped by length within each batch, each group run as
one batch, the output in input order: nothing is padded.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

from oneneuron import cli
from oneneuron.errors import InputError
from serve.batch import parts
from serve.batch.cluster import TLS_FLAGS, ClusterConfig, run_cluster
from serve.batch.job import FORMATS, MAX_CELL_CHARS, ON_ERROR, PART_ROWS, BatchJob, parse_map, plan
from serve.batch.local import run_local
from serve.batch.score import check_types
from serve.batch.source import column_types, resolve_inputs
from serve.batch.verify import VerifiedModel, open_job_model

logger = logging.getLogger(__name__)


def build_parser():
    p = cli.parser(
        __doc__.splitlines()[0].split(": ", 1)[1],
        "python -m serve.batch --model keras_linear --input data.parquet --output scored/",
    )
    cli.artifacts_arg(p, writes=False)
    p.add_argument("--model", required=True, help="model name in the manifest, or a path to a .onnx file")
    p.add_argument("--input", required=True, help="a CSV or Parquet file, a directory of them, or a glob")
    p.add_argument("--output", required=True, type=Path, help="output directory (parts + manifests)")
    p.add_argument("--format", choices=FORMATS, default="parquet", help="output part format")
    p.add_argument("--keep", default=None, help="input columns to carry into the output (default: all)")
    p.add_argument(
        "--map",
        action="append",
        default=[],
        metavar="INPUT=COL[,COL...]",
        help="feed model input INPUT from these columns (repeat per input); an input of rank above 2 "
        "or with a dynamic dimension (images, sequences) from one column of nested lists",
    )
    p.add_argument(
        "--batch-rows",
        type=cli.positive_int,
        default=65536,
        help="rows per model run and row group (memory); rows whose tensors differ in a dynamic "
        "dimension (sequences of different lengths) run as one batch per length, nothing padded",
    )
    p.add_argument(
        "--part-rows",
        type=cli.positive_int,
        default=PART_ROWS,
        help="rows per output part: the unit of --resume and of Dask tasks (default %(default)s)",
    )
    p.add_argument(
        "--max-cell-chars",
        type=cli.positive_int,
        default=MAX_CELL_CHARS,
        help="CSV: a tensor cell (JSON nested lists) longer than this is a bad cell",
    )
    p.add_argument("--threads", type=cli.positive_int, default=1, help="onnxruntime intra-op threads")
    p.add_argument(
        "--on-error",
        choices=ON_ERROR,
        default="fail",
        help="a bad cell stops the job (fail) or its row is skipped and reported (skip)",
    )
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--resume", action="store_true", help="continue an interrupted job in --output")
    mode.add_argument("--overwrite", action="store_true", help="replace a previous job's output")
    where = p.add_mutually_exclusive_group()
    where.add_argument(
        "--scheduler",
        default=None,
        metavar="tls://HOST:PORT",
        help="run on this Dask cluster (tls:// with the three --tls-* files; plain tcp:// lets anyone "
        "who reaches it run code as the workers' user)",
    )
    where.add_argument(
        "--workers",
        type=cli.positive_int,
        default=None,
        help="start a local Dask cluster with N one-thread workers (TLS with a throwaway CA)",
    )
    for flag, what in zip(
        TLS_FLAGS,
        ("the CA that signed the cluster's certificates", "this client's certificate", "its key"),
        strict=True,
    ):
        p.add_argument(flag, default=None, metavar="PEM", help=f"--scheduler tls://: {what}")
    p.add_argument(
        "--trust-key",
        type=Path,
        default=None,
        metavar="PEM",
        help="public key: the directory's model.sig must verify before any work (and on each worker)",
    )
    cli.min_generation_arg(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def make_job(args) -> tuple[BatchJob, VerifiedModel]:
    """Resolve and verify the model (and its manifest's generation against --min-generation), resolve
    the input, check them against each other; nothing is written yet. The model's bytes are read
    once: what was verified is what runs."""
    verified = open_job_model(args.model, args.artifacts, args.trust_key, args.threads, args.min_generation)
    model = verified.model
    variant = verified.entry.variant if verified.entry is not None else None
    files = resolve_inputs(args.input)
    types = [column_types(f) for f in files]
    columns = list(types[0])
    for f, kinds in zip(files[1:], types[1:], strict=True):
        if list(kinds) != columns:
            raise InputError(f"--input {f.path}: columns differ from {files[0].path}; score them separately")
    keep = [c.strip() for c in args.keep.split(",") if c.strip()] if args.keep is not None else None
    the_plan = plan(model.signature, columns, parse_map(args.map), keep, args.format)
    for f, kinds in zip(files, types, strict=True):
        if f.kind == "parquet":  # CSV is text by nature: its cells are parsed when scored
            check_types(the_plan, kinds, f.path)
    job = BatchJob(
        model_path=str(Path(verified.path).resolve()),
        model_sha256=verified.sha256,
        model_name=model.name,
        files=tuple(files),
        plan=the_plan,
        output=str(args.output.absolute()),
        fmt=args.format,
        batch_rows=args.batch_rows,
        part_rows=args.part_rows,
        on_error=args.on_error,
        threads=args.threads,
        max_cell_chars=args.max_cell_chars,
        signed_by=verified.signed_by,
        variant_of=variant.parent if variant is not None else None,
        variant_method=variant.method if variant is not None else None,
        selftest_rows=verified.selftest_rows,
    )
    return job, verified


def main() -> None:
    def _main(args) -> int:
        where = None
        if (
            args.scheduler
            or args.workers
            or any(v is not None for v in (args.tls_ca_file, args.tls_cert, args.tls_key))
        ):
            where = ClusterConfig(args.scheduler, args.workers, args.tls_ca_file, args.tls_cert, args.tls_key)
        job, verified = make_job(args)
        out = Path(job.output)
        start = time.perf_counter()
        inputs = [f.path for f in job.files]
        with parts.locked(out, inputs):
            parts.prepare(out, job.identity(), inputs, args.resume, args.overwrite)
            if where is not None:
                # the scheduler's and nanny's INFO lines would bury our own (the plain-TCP warning)
                logging.getLogger("distributed").setLevel(logging.DEBUG if args.verbose else logging.WARNING)
                final = run_cluster(job, verified.data, where, quiet=args.quiet)
            else:
                final = run_local(job, verified.model, quiet=args.quiet)
        seconds = time.perf_counter() - start
        if "rows_per_worker" in final:
            shares = ", ".join(f"{w}: {n:,}" for w, n in sorted(final["rows_per_worker"].items()))
            print(f"rows per dask worker: {shares}")
        print(
            f"scored {final['rows_out']:,} of {final['rows_in']:,} rows ({final['rows_skipped']:,} skipped"
            + (f", {final['lines_skipped']:,} ragged lines skipped" if final["lines_skipped"] else "")
            + ") "
            f"into {len(final['parts'])} parts in {out} in {seconds:.1f} s "
            f"({final['rows_in'] / max(seconds, 1e-9):,.0f} rows/s)"
        )
        return 0

    cli.run(_main, build_parser().parse_args())


if __name__ == "__main__":
    sys.exit(main())
