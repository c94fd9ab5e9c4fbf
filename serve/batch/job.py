"""What a batch job is: the frozen `BatchJob` and the column plan checked against the model.

`plan(...)` maps the model's inputs to input columns (by name, `name_0..name_{n-1}` for an
input of width n, or `--map input=col1,col2`) and its outputs to output columns, and refuses
any mismatch before a row is read.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from oneneuron.errors import InputError

FORMATS = ("parquet", "csv")
ON_ERROR = ("fail", "skip")
PART_ROWS = 1 << 20  # 16 batches of the default 65,536 rows: ~20 parts for 20M rows, not ~300


@dataclass(frozen=True)
class ModelInput:
    """One model input fed from `columns` (in order) as `dtype`, shape [rows] or [rows, width]."""

    name: str
    dtype: str
    columns: tuple[str, ...]
    flat: bool  # the input is 1-D: [rows]


@dataclass(frozen=True)
class ModelOutput:
    name: str
    width: int | None  # values per row; None when the model leaves it dynamic


@dataclass(frozen=True)
class Plan:
    """Which columns feed which inputs, which are kept, and the outputs appended."""

    inputs: tuple[ModelInput, ...]
    outputs: tuple[ModelOutput, ...]
    keep: tuple[str, ...]

    @property
    def read_columns(self) -> list[str]:
        seen = dict.fromkeys(self.keep)
        for inp in self.inputs:
            seen.update(dict.fromkeys(inp.columns))
        return list(seen)


@dataclass(frozen=True)
class BatchJob:
    """Everything that decides a job's output; `--resume` refuses when any of it changed."""

    model_path: str
    model_sha256: str
    model_name: str
    files: tuple[Any, ...]  # source.InputFile
    plan: Plan
    output: str
    fmt: str = "parquet"
    batch_rows: int = 65536  # rows per model run and per Parquet row group (the memory bound)
    part_rows: int = PART_ROWS  # rows per output part: the unit of --resume and of Dask tasks
    on_error: str = "fail"
    threads: int = 1
    selftest: bool = True
    signed_by: str | None = None  # --trust-key: the key's fingerprint; model_sha256 is the signed digest
    variant_of: str | None = None  # the model is a variant (export.optimize, N.int8) of this parent
    variant_method: str | None = None  # and was made so (int8-dynamic, int8-static, fp16, graph-opt)

    def identity(self) -> dict:
        """The fields a resumed run must match (not threads or where the work runs)."""
        return {
            "model_sha256": self.model_sha256,
            "inputs": [f.identity() for f in self.files],
            "plan": {
                "inputs": [vars(i) | {"columns": list(i.columns)} for i in self.plan.inputs],
                "outputs": [vars(o) for o in self.plan.outputs],
                "keep": list(self.plan.keep),
            },
            "format": self.fmt,
            "batch_rows": self.batch_rows,
            "part_rows": self.part_rows,
            "on_error": self.on_error,
        }


def parse_map(items: list[str]) -> dict[str, tuple[str, ...]]:
    """`["a=c1,c2", "b=c3"]` -> {"a": ("c1", "c2"), "b": ("c3",)}."""
    out: dict[str, tuple[str, ...]] = {}
    for item in items:
        name, sep, cols = item.partition("=")
        columns = tuple(c.strip() for c in cols.split(","))
        if not sep or not name.strip() or not all(columns):
            raise InputError(f"--map {item!r}: expected INPUT=COLUMN[,COLUMN...], e.g. --map x=f0,f1")
        if name.strip() in out:
            raise InputError(f"--map names input {name.strip()!r} twice; give each input once")
        out[name.strip()] = columns
    return out


def plan(
    signature: dict, columns: list[str], mapping: dict[str, tuple[str, ...]], keep: list[str] | None, fmt: str
) -> Plan:
    """Check the model's signature against the input's columns; one InputError naming the fix."""
    names = [i["name"] for i in signature["inputs"]]
    unknown = sorted(set(mapping) - set(names))
    if unknown:
        raise InputError(f"--map names {unknown}, which the model does not have; its inputs are {names}")
    inputs = []
    for spec in signature["inputs"]:
        name, shape = spec["name"], spec["shape"]
        if len(shape) not in (1, 2) or (len(shape) == 2 and not isinstance(shape[1], int)):
            raise InputError(
                f"model input {name!r} has shape {shape}; batch scoring feeds [rows] or [rows, n] inputs "
                "from columns"
            )
        width = 1 if len(shape) == 1 else shape[1]
        if name in mapping:
            cols = mapping[name]
        elif width == 1 and name in columns:
            cols = (name,)
        else:
            cols = tuple(f"{name}_{i}" for i in range(width))
        missing = [c for c in cols if c not in columns]
        if missing or len(cols) != width:
            raise InputError(
                f"model input {name!r} needs {width} column(s); "
                + (f"columns {missing} are not in the input" if missing else f"--map gives {len(cols)}")
                + f" (input columns: {_preview(columns)}); pass --map {name}="
                + ",".join(f"COL{i}" for i in range(width))
            )
        inputs.append(ModelInput(name, spec["dtype"], cols, len(shape) == 1))
    outputs = []
    for spec in signature["outputs"]:
        dims = spec["shape"][1:]
        width = math.prod(dims) if all(isinstance(d, int) for d in dims) else None
        outputs.append(ModelOutput(spec["name"], width))
    if keep is None:
        keep = list(columns)
    else:
        missing = [c for c in keep if c not in columns]
        if missing:
            raise InputError(f"--keep {missing}: not in the input (columns: {_preview(columns)})")
    out_cols = [c for o in outputs for c in output_columns(o, fmt)]
    clash = sorted(set(out_cols) & set(keep))
    if clash:
        raise InputError(
            f"output column(s) {clash} would overwrite input columns of the same name; pass "
            f"--keep {','.join(c for c in keep if c not in clash) or 'COLUMN'} to carry other columns"
        )
    return Plan(tuple(inputs), tuple(outputs), tuple(keep))


def output_columns(output: ModelOutput, fmt: str) -> list[str]:
    """Parquet: one column per output (a list column when wider than 1); CSV: name_0.. when wider."""
    if output.width == 1 or fmt == "parquet":
        return [output.name]
    if output.width is None:
        raise InputError(f"output {output.name!r} has a dynamic width; write it with --format parquet")
    return [f"{output.name}_{i}" for i in range(output.width)]


def _preview(columns: list[str], limit: int = 12) -> str:
    return ", ".join(columns[:limit]) + (f", ... ({len(columns)} in all)" if len(columns) > limit else "")
