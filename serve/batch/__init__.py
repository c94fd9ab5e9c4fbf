"""Batch scoring: `python -m serve.batch --model NAME --input PATH --output DIR`.

Streams CSV or Parquet through a verified model in batches of `--batch-rows`, writes numbered
output parts of `--part-rows` rows, each committed atomically (resumable with `--resume`),
locally by default or on a Dask cluster with `--scheduler` / `--workers` (README "Batch scoring").

Modules: `job` (the frozen job description and the column mapping), `verify` (the model's
bytes, read once and verified, and sessions built from them), `source` (reading input batches,
part by part), `writer` (one part, hashed while written), `parts` (the output directory: part
manifests, resume, final manifest), `score` (one batch through the model), `local` (the
streaming engine), `cluster` (Dask, TLS-confined).
"""
