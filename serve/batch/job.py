"""What a batch job is: the frozen `BatchJob` and the column plan checked against the model.

`plan(...)` maps the model's inputs to input columns and its outputs to output columns, and
refuses any mismatch before a row is read. An input of shape [rows] or [rows, n] reads one column
per value (the column of its name when n is 1, `name_0..name_{n-1}`, or `--map input=col1,col2`);
any other input (an image [rows, 3, 96, 96], a sequence [rows, seq]) reads one *tensor column*
(the column of its name, or `--map input=col`) holding each row's tensor as nested lists
(serve/batch/tensors.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from oneneuron.errors import InputError

FORMATS = ("parquet", "csv")
ON_ERROR = ("fail", "skip")
PART_ROWS = 1 << 20  # 16 batches of the default 65,536 rows: ~20 parts for 20M rows, not ~300
# a CSV cell holding a tensor as JSON text longer than this is a bad cell (--max-cell-chars): 4 MiB
# holds a 3x224x224 float image printed with 8 significant digits (~1.6 MB)
MAX_CELL_CHARS = 1 << 22


@dataclass(frozen=True)
class ModelInput:
    """One model input fed from `columns` (in order) as `dtype`: shape [rows] or [rows, width] from
    one column per value, or (`tensor`) any shape from one column of nested lists."""

    name: str
    dtype: str
    columns: tuple[str, ...]
    flat: bool  # the input is 1-D: [rows]
    dims: tuple[int | None, ...] = ()  # the shape of one row (None: a dimension the model leaves dynamic)
    tensor: bool = False  # one column holding each row's tensor (nested lists; CSV: JSON text)


@dataclass(frozen=True)
class ModelOutput:
    name: str
    width: int | None  # values per row; None when the model leaves it dynamic
    dims: tuple[int | None, ...] = (1,)  # the shape of one row, as the model declares it
    dtype: str = "float32"

    @property
    def tensor(self) -> bool:
        """Written as one nested-list column (CSV: JSON text): any rank above 2, or a dynamic dim."""
        return len(self.dims) > 1 or self.width is None


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
    max_cell_chars: int = MAX_CELL_CHARS  # a longer CSV cell of a tensor column is a bad cell
    signed_by: str | None = None  # --trust-key: the key's fingerprint; model_sha256 is the signed digest
    variant_of: str | None = None  # the model is a variant (export.optimize, N.int8) of this parent
    variant_method: str | None = None  # and was made so (int8-dynamic, int8-static, fp16, graph-opt)
    # the probe rows the model's self-test runs on when they are not embedded in its metadata, read
    # and checked by the job (serve/batch/verify.py): Dask workers have no artifacts directory
    selftest_rows: tuple | None = field(default=None, repr=False, compare=False)

    def identity(self) -> dict:
        """The fields a resumed run must match (not threads or where the work runs)."""
        tensors = any(i.tensor for i in self.plan.inputs)
        return ({"max_cell_chars": self.max_cell_chars} if tensors else {}) | {
            "model_sha256": self.model_sha256,
            "inputs": [f.identity() for f in self.files],
            "plan": {
                "inputs": [_plain(vars(i)) for i in self.plan.inputs],
                "outputs": [_plain(vars(o)) for o in self.plan.outputs],
                "keep": list(self.plan.keep),
            },
            "format": self.fmt,
            "batch_rows": self.batch_rows,
            "part_rows": self.part_rows,
            "on_error": self.on_error,
        }


def _plain(fields: dict) -> dict:
    """A plan entry as JSON has it (tuples as lists), so a resumed job compares equal."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in fields.items()}


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
    inputs = [_model_input(spec, columns, mapping.get(spec["name"])) for spec in signature["inputs"]]
    outputs = []
    for spec in signature["outputs"]:
        dims = tuple(spec["shape"][1:])
        width = math.prod(dims) if all(isinstance(d, int) for d in dims) else None
        outputs.append(ModelOutput(spec["name"], width, dims, spec["dtype"]))
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


def _model_input(spec: dict, columns: list[str], mapped: tuple[str, ...] | None) -> ModelInput:
    """Which column(s) feed one model input; InputError naming the fix when they are not there."""
    name, shape = spec["name"], spec["shape"]
    dims = tuple(shape[1:])
    width = 1 if not dims else dims[0] if len(dims) == 1 and isinstance(dims[0], int) else None
    if width is not None:  # [rows] or [rows, n]: one column per value, or one list column `name`
        if mapped is not None:
            cols = mapped
        elif width == 1 and name in columns:
            cols = (name,)
        else:
            cols = tuple(f"{name}_{i}" for i in range(width))
            if width > 1 and name in columns and not any(c in columns for c in cols):
                cols = (name,)  # a list column of n values per row
        if len(cols) == 1 and width > 1:
            return _tensor_input(spec, cols, columns)
        missing = [c for c in cols if c not in columns]
        if missing or len(cols) != width:
            raise InputError(
                f"model input {name!r} needs {width} column(s); "
                + (f"columns {missing} are not in the input" if missing else f"--map gives {len(cols)}")
                + f" (input columns: {_preview(columns)}); pass --map {name}="
                + ",".join(f"COL{i}" for i in range(width))
                + f" (or --map {name}=COLUMN, a column of {width}-value lists)"
            )
        return ModelInput(name, spec["dtype"], cols, len(shape) == 1, dims)
    if mapped is not None and len(mapped) != 1:
        raise InputError(
            f"model input {name!r} takes a tensor of shape {shape_text(dims)} per row, from one column; "
            f"--map gives {len(mapped)} ({', '.join(mapped)}): pass --map {name}=COLUMN"
        )
    return _tensor_input(spec, mapped or (name,), columns)


def _tensor_input(spec: dict, cols: tuple[str, ...], columns: list[str]) -> ModelInput:
    name, dims = spec["name"], tuple(spec["shape"][1:])
    if cols[0] not in columns:
        raise InputError(
            f"model input {name!r} takes a tensor of shape {shape_text(dims)} per row, from one column of "
            f"nested lists (Parquet list or fixed_size_list, CSV JSON text); column {cols[0]!r} is not in "
            f"the input (input columns: {_preview(columns)}); pass --map {name}=COLUMN"
        )
    return ModelInput(name, spec["dtype"], cols, False, dims, tensor=True)


def shape_text(dims: tuple) -> str:
    """(3, 96, 96) or (seq,) with 'any' for a dynamic dimension."""
    return (
        "(" + ", ".join("any" if d is None else str(d) for d in dims) + ("," if len(dims) == 1 else "") + ")"
    )


def output_columns(output: ModelOutput, fmt: str) -> list[str]:
    """Parquet: one column per output (a list column when wider than 1, nested lists for a rank above
    2 or a dynamic dimension); CSV: name_0.. when wider, one JSON text column for a tensor output."""
    if output.width == 1 or fmt == "parquet" or output.tensor:
        return [output.name]
    return [f"{output.name}_{i}" for i in range(output.width)]


def _preview(columns: list[str], limit: int = 12) -> str:
    return ", ".join(columns[:limit]) + (f", ... ({len(columns)} in all)" if len(columns) > limit else "")
