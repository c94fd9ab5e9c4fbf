"""Batch scoring: `python -m serve.batch --model NAME --input PATH --output DIR`.

Streams CSV or Parquet through a verified model in fixed-size chunks, writes numbered,
atomically committed output parts (resumable with `--resume`), locally by default or on a
Dask cluster with `--scheduler` / `--workers` (README "Batch scoring").

Modules: `job` (the frozen job description and the column mapping), `source` (reading input
chunks), `parts` (the output directory: parts, part manifests, resume, final manifest),
`score` (one chunk through the model), `local` (the streaming engine), `cluster` (Dask).
"""
