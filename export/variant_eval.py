"""What export/optimize.py runs a model on: rows read from `--calibration` / `--data` files, the
rows' outputs, and median latency. serve.check's variant rows (serve/variants.py) use `outputs`.

A data file is an `.npz` with one array per input name (as `--probe-inputs`), or a CSV / Parquet
table: one column per input named like it (inputs of shape [batch] or [batch, 1]), or, for a model
with one 2-D input [batch, n], n numeric columns in the input's order. At most `rows` rows are read:
a seeded sample when the file has more. An .npz may be up to MAX_DATA_BYTES (a probe file: 64 MiB).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from export.probe import exact, read_inputs
from oneneuron.errors import InputError
from oneneuron.schema import Signature

SEED = 0  # the sample of a file longer than --calibration-rows / --data-rows
# An .npz of --data / --calibration rows: larger than a probe (1,000 images at 224 px are 602 MB);
# read whole, then sampled, so this bounds the memory it takes.
MAX_DATA_BYTES = 2 << 30


def read_rows(path: Path, signature: Signature, rows: int, flag: str) -> dict[str, np.ndarray]:
    """At most `rows` rows of named inputs from an .npz, .csv or .parquet file (module docstring)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".npz":
        arrays = read_inputs(path, signature, MAX_DATA_BYTES)
    elif suffix in (".csv", ".parquet", ".pq"):
        arrays = _table(path, signature, suffix, flag)
    else:
        raise InputError(f"{flag} {path}: unknown file type {suffix!r}; expected .npz, .csv or .parquet")
    total = len(next(iter(arrays.values())))
    if total > rows:
        pick = np.sort(np.random.default_rng(SEED).choice(total, rows, replace=False))
        arrays = {k: v[pick] for k, v in arrays.items()}
    return arrays


def _table(path: Path, signature: Signature, suffix: str, flag: str) -> dict[str, np.ndarray]:
    import pyarrow.csv
    import pyarrow.parquet

    if not path.is_file():
        raise InputError(f"{flag} {path}: no such file")
    try:
        table = pyarrow.csv.read_csv(path) if suffix == ".csv" else pyarrow.parquet.read_table(path)
    except Exception as exc:  # pyarrow's ArrowInvalid and friends
        raise InputError(f"{flag} {path}: not a readable table ({str(exc)[:160]})") from None
    columns = table.column_names
    specs = signature.inputs
    how = (
        f"expected one column per input ({', '.join(s.name for s in specs)}) or, for one 2-D input, "
        "one numeric column per feature"
    )

    def column(name: str) -> np.ndarray:
        try:
            return table.column(name).to_numpy(zero_copy_only=False)
        except Exception as exc:
            raise InputError(
                f"{flag} {path}: column {name!r} is not numeric ({str(exc)[:80]}); {how}"
            ) from None

    if all(s.name in columns for s in specs) and all(len(s.shape) <= 2 for s in specs):
        out = {}
        for s in specs:
            values = column(s.name)
            if len(s.shape) == 2 and s.shape[1] not in (1, "1"):
                raise InputError(f"{flag} {path}: input {s.name!r} is {list(s.shape)}; {how}")
            shaped = values.reshape(-1, 1) if len(s.shape) == 2 else values
            out[s.name] = exact(shaped, np.dtype(s.dtype), f"{flag} {path}: column {s.name!r}")
        return out
    if len(specs) == 1 and len(specs[0].shape) == 2:
        spec = specs[0]
        if isinstance(spec.shape[1], int) and spec.shape[1] != len(columns):
            raise InputError(f"{flag} {path}: {len(columns)} columns for {spec.shape[1]} features; {how}")
        matrix = np.stack([column(c) for c in columns], axis=1)
        return {spec.name: exact(matrix, np.dtype(spec.dtype), f"{flag} {path}")}
    raise InputError(f"{flag} {path}: columns {columns[:10]}; {how}")


def outputs(session, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """`session`'s outputs on `inputs`, one row per call (batch 1: a dynamically quantized model's
    rows then do not depend on each other), concatenated."""
    names = [o.name for o in session.get_outputs()]
    rows = len(next(iter(inputs.values())))
    got = [session.run(names, {k: v[i : i + 1] for k, v in inputs.items()}) for i in range(rows)]
    return {name: np.concatenate([g[j] for g in got]) for j, name in enumerate(names)}


def latency_ms(session, inputs: Mapping[str, np.ndarray], batch: int, seconds: float) -> float:
    """Median milliseconds of one call on `batch` rows (the first rows, repeated when fewer), over
    as many calls as fit in `seconds` (at least 5, at most 2,000), after 3 warm-up calls."""
    rows = len(next(iter(inputs.values())))
    pick = np.arange(batch) % rows
    feeds = {k: np.ascontiguousarray(v[pick]) for k, v in inputs.items()}
    names = [o.name for o in session.get_outputs()]
    for _ in range(3):
        session.run(names, feeds)
    times: list[float] = []
    deadline = time.perf_counter() + seconds
    while len(times) < 5 or (time.perf_counter() < deadline and len(times) < 2000):
        start = time.perf_counter()
        session.run(names, feeds)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000
