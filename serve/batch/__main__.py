"""`python -m serve.batch --model NAME --input PATH --output DIR`: score files too large for a request.

Local by default (one streaming process); `--scheduler tcp://HOST:PORT` runs the same job on
a Dask cluster, `--workers N` on a local one. See README "Batch scoring".
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

from oneneuron import cli
from oneneuron.errors import InputError
from oneneuron.fsio import sha256_file
from oneneuron.schema import Manifest
from serve.batch import parts
from serve.batch.job import FORMATS, ON_ERROR, PART_ROWS, BatchJob, parse_map, plan
from serve.batch.local import open_model, run_local
from serve.batch.source import column_names, resolve_inputs
from serve.loader import check_floor, resolve

logger = logging.getLogger(__name__)


def build_parser():
    p = cli.parser(
        __doc__.splitlines()[0].split(": ", 1)[1],
        "python -m serve.batch --model keras_linear --input data.parquet --output scored/",
    )
    cli.artifacts_arg(p)
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
        help="feed model input INPUT from these columns (repeat per input)",
    )
    p.add_argument(
        "--batch-rows", type=cli.positive_int, default=65536, help="rows per model run and row group (memory)"
    )
    p.add_argument(
        "--part-rows",
        type=cli.positive_int,
        default=PART_ROWS,
        help="rows per output part: the unit of --resume and of Dask tasks (default %(default)s)",
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
        "--scheduler", default=None, metavar="tcp://HOST:PORT", help="run on this Dask cluster"
    )
    where.add_argument(
        "--workers",
        type=cli.positive_int,
        default=None,
        help="start a local Dask cluster with N one-thread workers",
    )
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


def make_job(args) -> tuple[BatchJob, object]:
    """Resolve the model and the input, check them against each other; nothing is written yet."""
    path, entry, root = resolve(args.model, args.artifacts)
    sha256, signed_by, manifest = entry.sha256 if entry else None, None, None
    if args.trust_key is not None:  # before onnxruntime reads a byte of the model
        from oneneuron.signing import verify_file

        verified = verify_file(path, root.dir if root is not None else path.parent, args.trust_key)
        signed_by, manifest = verified.key_fingerprint, verified.manifest  # the floor: signed bytes
        sha256 = verified.digest(entry.path) if entry is not None else sha256_file(path)
    elif args.min_generation is not None and root is not None:
        manifest = Manifest.load(root.dir)
    check_floor(root.dir if root is not None else Path(path).parent, args.min_generation, manifest)
    model = open_model(path, sha256, args.threads)
    files = resolve_inputs(args.input)
    columns = column_names(files[0])
    for f in files[1:]:
        if column_names(f) != columns:
            raise InputError(f"--input {f.path}: columns differ from {files[0].path}; score them separately")
    keep = [c.strip() for c in args.keep.split(",") if c.strip()] if args.keep is not None else None
    the_plan = plan(model.signature, columns, parse_map(args.map), keep, args.format)
    job = BatchJob(
        model_path=str(Path(path).resolve()),
        model_sha256=sha256 or sha256_file(path),
        model_name=model.name,
        files=tuple(files),
        plan=the_plan,
        output=str(args.output.absolute()),
        fmt=args.format,
        batch_rows=args.batch_rows,
        part_rows=args.part_rows,
        on_error=args.on_error,
        threads=args.threads,
        signed_by=signed_by,
        variant_of=entry.variant.parent if entry is not None and entry.variant is not None else None,
        variant_method=entry.variant.method if entry is not None and entry.variant is not None else None,
    )
    return job, model


def main() -> None:
    def _main(args) -> int:
        job, model = make_job(args)
        out = Path(job.output)
        start = time.perf_counter()
        with parts.locked(out):
            parts.prepare(out, job.identity(), [f.path for f in job.files], args.resume, args.overwrite)
            if args.scheduler or args.workers:
                from serve.batch.cluster import run_cluster

                final = run_cluster(job, args.scheduler, args.workers, quiet=args.quiet)
            else:
                final = run_local(job, model, quiet=args.quiet)
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
