"""TF Serving `:predict` for a model of any signature (several named inputs and outputs, any dtype).

Row format: `{"instances": [{"features": [...], "ids": [...]}, ...]}` (one object per row; a model
with one input may also give the bare values) answers `{"predictions": [...]}`: one value per row
with one output, one `{output: value}` object per row with several. Columnar format:
`{"inputs": {"features": [[...]], "ids": [[...]]}}` (a bare list for one input) answers
`{"outputs": ...}`: the list with one output, `{output: list}` with several. JSON values are
converted by `Model.run` only where exact (no float to int, no number to bool, range checked).
The article's models keep their fast path in tfserving.py.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from serve.http import tensors
from serve.http.httpio import ApiError, preview
from serve.loader import Model

SIGNATURE = "serving_default"
TF_TYPES = {
    "bool": "DT_BOOL",
    "int8": "DT_INT8",
    "int16": "DT_INT16",
    "int32": "DT_INT32",
    "int64": "DT_INT64",
    "uint8": "DT_UINT8",
    "uint16": "DT_UINT16",
    "uint32": "DT_UINT32",
    "uint64": "DT_UINT64",
    "float16": "DT_HALF",
    "float32": "DT_FLOAT",
    "float64": "DT_DOUBLE",
}


def check_format(body: dict[str, Any], columnar: str) -> None:
    """A :predict body names the one signature and exactly one of the row and columnar formats."""
    signature = body.get("signature_name", SIGNATURE)
    if signature != SIGNATURE:
        raise ApiError(400, f"unknown signature_name {preview(signature)}; the model has {SIGNATURE!r}")
    if ("instances" in body) == ("inputs" in body):
        raise ApiError(
            400,
            "the body needs exactly one of 'instances' (row format: a list with one entry per row) "
            f"or 'inputs' (columnar format: {columnar})",
        )


def decode(model: Model, body: dict[str, Any], max_rows: int) -> tuple[dict[str, Any], str]:
    """The feeds of a :predict body for any signature and the response key ("predictions"/"outputs")."""
    check_format(body, "{input name: rows}")
    names = [s.name for s in tensors.specs(model)[0]]
    if "instances" in body:
        rows = body["instances"]
        if not isinstance(rows, list) or not rows:
            raise ApiError(
                400, f"'instances' must be a non-empty list with one entry per row, got {preview(rows)}"
            )
        _limit(len(rows), max_rows)
        if len(names) == 1 and not any(isinstance(r, dict) for r in rows):
            return {names[0]: rows}, "predictions"
        for i, row in enumerate(rows):
            if not isinstance(row, dict) or sorted(row) != sorted(names):
                raise ApiError(
                    400, f"instances[{i}] must be an object with exactly the keys {names}, got {preview(row)}"
                )
        return {n: [row[n] for row in rows] for n in names}, "predictions"
    columns = body["inputs"]
    if len(names) == 1 and isinstance(columns, list):
        columns = {names[0]: columns}
    if not isinstance(columns, dict) or sorted(columns) != sorted(names):
        raise ApiError(
            400,
            f"'inputs' must be an object with exactly the keys {names} (input name: rows), "
            f"got {preview(columns)}",
        )
    for n in names:
        if not isinstance(columns[n], list):
            raise ApiError(400, f"input {n!r}: 'inputs' needs a list of rows, got {preview(columns[n])}")
        _limit(len(columns[n]), max_rows)
    return dict(columns), "outputs"


def _limit(rows: int, max_rows: int) -> None:
    if rows > max_rows:
        raise ApiError(
            413, f"{rows} rows exceed the limit of {max_rows} per request (--max-rows); split the batch"
        )


def encode(key: str, outputs: dict[str, np.ndarray]) -> dict[str, Any]:
    """The :predict response body for `outputs` (in the model's output order)."""
    lists = {name: arr.tolist() for name, arr in outputs.items()}
    if key == "outputs":
        return {key: next(iter(lists.values())) if len(lists) == 1 else lists}
    if len(lists) == 1:
        return {key: next(iter(lists.values()))}
    rows = len(next(iter(lists.values())))
    return {key: [{name: values[i] for name, values in lists.items()} for i in range(rows)]}


def tensor_info(args: list[dict[str, Any]]) -> dict[str, Any]:
    """The signature_def inputs/outputs of the metadata route, with real dtypes and -1 for dynamic dims."""
    return {
        a["name"]: {
            "dtype": TF_TYPES[a["dtype"]],
            "name": f"{a['name']}:0",
            "tensor_shape": {
                "dim": [{"size": "-1" if d is None else str(d), "name": ""} for d in a["shape"]],
                "unknown_rank": False,
            },
        }
        for a in args
    }
