"""Tensors in the engine's terms: a model's input and output specs, and the validation that turns
what a protocol decoded (`Input`: a name, a V2 datatype, a shape and JSON values, typed values or
raw little-endian bytes) into the arrays the model runs on.

One rule for every model and every protocol: each input is sent in a datatype that maps onto the
model's dtype. A floating input takes any real datatype (FP16/FP32/FP64/BF16, INT*, UINT*: the
values are rounded to the input's precision; beyond its range they become infinite and are refused
as non-finite). An integer input takes integer datatypes whose values fit (INT8 data for an int64
input; never floats, never bools); a bool input takes BOOL only. Values outside their declared
datatype (INT8 300, UINT8 -1, FP16 1e6) are refused. Shapes: the model's rank and static
dimensions, 1..max_rows rows, the same rows for every input. Everything else is an `InputError`
(400 / INVALID_ARGUMENT) naming the input; too many rows a `TooLarge` (413 / RESOURCE_EXHAUSTED).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from serve.engine.dtypes import NUMPY_TYPES, V2_TYPES, WIRE_TYPES, datatype
from serve.engine.errors import InputError, TooLarge, preview
from serve.inputs import SMALL, small_float32
from serve.loader import Model


@dataclass(frozen=True)
class Spec:
    """One input or output of a model: name, numpy dtype, shape (None for dynamic dims)."""

    name: str
    dtype: np.dtype
    shape: tuple[int | None, ...]


@dataclass(frozen=True)
class Plan:
    """What the engine derives from a model once: its specs, and for the fast path of plain
    requests each input's (spec, V2 datatype, static dims after the batch, values per row)
    when every input's dims after the batch are static (else empty)."""

    inputs: tuple[Spec, ...]
    outputs: tuple[Spec, ...]
    by_name: dict[str, Spec]
    plain: dict[str, tuple[Spec, str, list[int], int]]


def plan(model: Model) -> Plan:
    """The model's `Plan`, computed once per loaded model."""
    found = model.derived.get("engine")
    if found is None:
        sig = model.signature
        inputs, outputs = (
            tuple(Spec(a["name"], np.dtype(a["dtype"]), tuple(a["shape"])) for a in sig[side])
            for side in ("inputs", "outputs")
        )
        plain = {
            s.name: (s, datatype(s.dtype), list(s.shape[1:]), math.prod(s.shape[1:]))
            for s in inputs
            if s.shape and all(d is not None for d in s.shape[1:])
        }
        found = Plan(inputs, outputs, {s.name: s for s in inputs}, plain if len(plain) == len(inputs) else {})
        model.derived["engine"] = found
    return found


def dims(shape: tuple[int | None, ...]) -> list[int]:
    """A shape for metadata: -1 for a dynamic dimension."""
    return [-1 if d is None else d for d in shape]


def _text(shape: tuple[int | None, ...]) -> str:
    return (
        "["
        + ", ".join("rows" if i == 0 else str(d) if d is not None else "any" for i, d in enumerate(shape))
        + "]"
    )


UNTYPED = ("untyped",)  # Input.datatype of JSON values without one (TF Serving): never a client's value


@dataclass(slots=True)
class Input:
    """One input tensor as a protocol decoded it, not validated yet."""

    name: Any
    datatype: Any  # a V2 datatype; UNTYPED: JSON values taken as the input's own dtype (TF Serving)
    shape: Any  # ignored when UNTYPED (the values' own shape)
    data: Any = None  # JSON values (flat or nested lists), or a numpy array (gRPC typed contents)
    raw: Any = None  # little-endian bytes (the binary extension, gRPC raw_input_contents)


def check_range(flat: np.ndarray, name: str, given: str) -> None:
    """Refuse values of `flat` (parsed JSON or gRPC typed contents, any numeric dtype) that are not
    representable in the request's declared datatype `given`: INT8 300, UINT8 -1 or FP16 1e6 are
    refused rather than wrapped or rounded to infinity; NaN/inf are left to the finiteness check."""
    target = NUMPY_TYPES.get(given)
    if target is None or flat.size == 0 or flat.dtype == target or target.kind == "b":
        return
    if target.kind in "iu":
        info = np.iinfo(target)
        if flat.dtype.kind == "f":
            return  # floats for an integer datatype are refused by the callers' kind checks
        low, high = flat.min(), flat.max()
        if int(low) < info.min or int(high) > info.max:
            bad = low if int(low) < info.min else high
            raise InputError(
                f"input {name!r}: value {bad} is outside {given}'s range [{info.min}, {info.max}]"
            )
        return
    limit = float(np.finfo(target).max)
    if flat.dtype.kind == "f":
        with np.errstate(invalid="ignore"):
            finite = flat[np.isfinite(flat)]
    else:
        finite = flat
    if finite.size and float(np.abs(finite).max()) > limit:
        raise InputError(
            f"input {name!r}: a value beyond ±{limit:.6g} is outside {given}'s range; send {given}"
        )


def has_bool(values: list) -> bool:
    """Whether a (nested) JSON list holds true/false: numpy would take them as 1 and 0 among numbers."""
    if not values:
        return False
    if type(values[0]) is list:
        return any(type(row) is list and has_bool(row) for row in values)
    return bool in set(map(type, values))


_SOURCES: dict[tuple[np.dtype, str], np.dtype] = {}  # (input dtype, request datatype) -> source dtype


def check_datatype(spec: Spec, given: Any) -> np.dtype:
    """The numpy dtype of the request's datatype `given` when it maps onto the input's (see the
    module docstring); else InputError."""
    if type(given) is str:
        known = _SOURCES.get((spec.dtype, given))
        if known is not None:
            return known
    wanted = datatype(spec.dtype)
    source = WIRE_TYPES.get(given) if isinstance(given, str) else None
    if source is None:
        raise InputError(
            f"input {spec.name!r}: datatype {preview(given)} is not supported; the model's input is "
            f"{wanted} (one of {', '.join(V2_TYPES.values())}, or BF16 for a floating input)"
        )
    if given == "BF16":
        source = np.dtype("<f4")  # decoded to float32 (`from_raw`); JSON values are numbers
    fits = source == spec.dtype or (
        (spec.dtype.kind == "f" and source.kind in "iuf")
        or (spec.dtype.kind in "iu" and source.kind in "iu" and np.can_cast(source, spec.dtype, "safe"))
    )
    if not fits:
        raise InputError(
            f"input {spec.name!r}: datatype {given} does not map exactly onto the model's {wanted} "
            f"(values would change); send {wanted}"
        )
    _SOURCES[(spec.dtype, given)] = source  # a closed set of pairs: bounded
    return source


def check_shape(spec: Spec, shape: Any, max_rows: int) -> tuple[int, ...]:
    """A request's shape for `spec`: the model's rank and static dims, 1..max_rows rows."""
    if (
        type(shape) is list
        and shape
        and type(shape[0]) is float
        and shape[0] >= 2**63
        and shape[0].is_integer()
    ):
        shape = [int(shape[0]), *shape[1:]]  # orjson reads integers beyond 64 bits as floats: too many rows
    if (
        type(shape) is not list
        or len(shape) != len(spec.shape)
        or any(type(d) is not int or d < 0 for d in shape)
        or any(want is not None and d != want for want, d in zip(spec.shape[1:], shape[1:], strict=True))
    ):
        raise InputError(f"input {spec.name!r}: shape {preview(shape)}; expected {_text(spec.shape)}")
    if shape[0] == 0:
        raise InputError(f"input {spec.name!r}: shape {shape} has no rows; expected at least one")
    if shape[0] > max_rows:
        raise TooLarge(
            f"input {spec.name!r}: {preview(shape[0])} rows exceed the limit of {max_rows} per request "
            "(--max-rows); split the batch"
        )
    return tuple(shape)


def _small(spec: Spec, source: np.dtype, values: list) -> tuple[np.ndarray, bool] | None:
    """A short flat list of JSON numbers whose datatype is the input's own float32 / int64 (the
    common request), converted directly, and whether every value is finite; None for anything
    else (the general path decides)."""
    kind = spec.dtype
    if source != kind:
        return None
    if kind == np.float32:
        return small_float32(values)
    if kind == np.int64:
        for v in values:
            if type(v) is not int or not -(2**63) <= v < 2**63:
                return None
        return np.array(values, dtype=np.int64), True
    return None


def from_values(spec: Spec, source: np.dtype, shape: tuple[int, ...], values: Any) -> np.ndarray:
    """JSON values (flat or nested lists) or typed values (a numpy array) of datatype `source`
    -> the input's array."""
    given = datatype(source)
    if type(values) is np.ndarray:  # gRPC typed contents
        if values.dtype.kind == "f" and source.kind != "f":
            raise InputError(f"input {spec.name!r}: typed contents hold floats for datatype {given}")
        check_range(values, spec.name, given)
        return from_flat(spec, source, shape, values, "contents")
    if not isinstance(values, list):
        raise InputError(
            f"input {spec.name!r}: 'data' must be a list of values (flat or nested), got {preview(values)}; "
            "or send binary_data_size with binary data"
        )
    if len(values) <= SMALL and len(values) == math.prod(shape):
        small = _small(spec, source, values)
        if small is not None:
            return small[0].reshape(shape)
    try:
        arr = np.asarray(values)
    except (ValueError, TypeError, OverflowError):
        raise InputError(
            f"input {spec.name!r}: nested 'data' is not rectangular; give a flat list of "
            f"{math.prod(shape)} values or nested lists matching the shape"
        ) from None
    kinds = {"b": "b", "i": "iu", "u": "iu", "f": "iuf"}[source.kind]
    if arr.dtype.kind not in kinds or (source.kind != "b" and has_bool(values)):
        what = {"b": "true/false", "i": "integers", "u": "integers", "f": "numbers"}[source.kind]
        raise InputError(
            f"input {spec.name!r}: 'data' {preview(values)} holds values that are not {what} "
            f"for datatype {given}"
        )
    flat = arr.reshape(-1)
    check_range(flat, spec.name, given)
    return from_flat(spec, source, shape, flat, "'data'")


def from_flat(
    spec: Spec, source: np.dtype, shape: tuple[int, ...], flat: np.ndarray, what: str = "the data"
) -> np.ndarray:
    """A flat array (already of kind `source`) -> the input's array of `shape`."""
    count = math.prod(shape)
    if flat.size != count:
        raise InputError(
            f"input {spec.name!r}: shape {list(shape)} needs {count} values, {what} has {flat.size}"
        )
    if flat.dtype != source:
        with np.errstate(over="ignore", invalid="ignore"):  # beyond the datatype's range: checked below
            cast = flat.astype(source)
        if source.kind in "iu" and not np.array_equal(cast, flat):
            raise InputError(f"input {spec.name!r}: values out of range for {datatype(source)}")
        flat = cast
    if flat.dtype != spec.dtype:  # floats: rounded; beyond the input's range: inf, refused by the run
        with np.errstate(over="ignore", invalid="ignore"):
            flat = flat.astype(spec.dtype)
    return flat.reshape(shape)


def decode_raw(raw: memoryview | bytes, given: str, count: int, name: str) -> np.ndarray:
    """Raw little-endian bytes of `count` elements of V2 datatype `given` -> a flat numpy array."""
    dtype = WIRE_TYPES[given]
    if len(raw) != count * dtype.itemsize:
        raise InputError(
            f"input {name!r}: {len(raw)} bytes of binary data, but {count} {given} elements "
            f"take {count * dtype.itemsize}; binary_data_size must equal elements x {dtype.itemsize} bytes"
        )
    arr = np.frombuffer(raw, dtype=dtype)
    if given == "BF16":  # bfloat16 is the top half of a float32
        arr = (arr.astype(np.uint32) << 16).view(np.float32)
    elif given == "BOOL" and arr.size and arr.view(np.uint8).max() > 1:
        raise InputError(f"input {name!r}: BOOL bytes must be 0 or 1")
    return arr


def from_raw(spec: Spec, given: str, shape: tuple[int, ...], raw: memoryview | bytes) -> np.ndarray:
    """Raw little-endian bytes (the binary extension, gRPC raw contents) -> the input's array."""
    flat = decode_raw(raw, given, math.prod(shape), spec.name)
    return from_flat(spec, flat.dtype, shape, flat)


def from_json(spec: Spec, values: Any, max_rows: int) -> np.ndarray | Any:
    """Values without a datatype (TF Serving's JSON): their own shape must fit the input's; the
    conversion to the input's dtype (only where exact) is the run's (`Model.run`)."""
    try:
        shape = np.shape(values)
    except (ValueError, TypeError):
        raise InputError(
            f"input {spec.name!r}: got {preview(values)}, which is not a rectangular array; "
            f"expected {_text(spec.shape)}"
        ) from None
    if len(spec.shape) == 2 and spec.shape[1] == 1 and len(shape) == 1:  # [batch, 1]: a row may be its value
        values, shape = [[v] for v in values], (shape[0], 1)
    check_shape(spec, list(shape), max_rows)
    return values


def select_outputs(plan: Plan, requested: Any, default: bool) -> list[tuple[Spec, bool]]:
    """(output spec, as binary) for each requested (name, binary flag or None); all outputs if none."""
    if not requested:
        return [(s, default) for s in plan.outputs]
    by_name = {s.name: s for s in plan.outputs}
    chosen, seen = [], set()
    for name, as_binary in requested:
        if type(name) is not str or name not in by_name:
            raise InputError(
                f"unknown output {preview(name)}; the model's output"
                + (f" is {plan.outputs[0].name!r}" if len(by_name) == 1 else f"s are {sorted(by_name)}")
            )
        if name in seen:
            raise InputError(f"output {name!r} is requested twice; name each output once")
        if as_binary is None:
            as_binary = default
        if not isinstance(as_binary, bool):
            raise InputError(f"output {name!r}: binary_data must be true or false, got {preview(as_binary)}")
        seen.add(name)
        chosen.append((by_name[name], as_binary))
    return chosen


def to_bytes(arr: np.ndarray) -> bytes:
    """An output as raw little-endian bytes (BOOL: one byte each)."""
    return arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()


def plain_feeds(plan: Plan, tensors: list[Input], max_rows: int) -> tuple[dict[str, np.ndarray], int] | None:
    """The common request, converted without the general path's per-field work: each input once,
    in its own datatype, a short flat list of finite values, the same rows for all. Returns the
    feeds and their rows (exact: `Model.run_exact` may run them as they are), or None for anything
    else (the general path validates it)."""
    plain = plan.plain
    if type(tensors) is not list or len(tensors) != len(plain) or not plain:
        return None
    feeds, rows = {}, -1
    for t in tensors:
        name, shape, data = t.name, t.shape, t.data
        found = plain.get(name) if type(name) is str else None
        if found is None or t.datatype != found[1] or type(shape) is not list or type(data) is not list:
            return None
        spec, _, dims, per_row = found
        for d in shape:
            if type(d) is not int:  # shape[1:] == dims alone would take true for 1
                return None
        r = shape[0] if shape else 0
        if not 0 < r <= max_rows or shape[1:] != dims or (rows >= 0 and r != rows):
            return None
        if len(data) != r * per_row or len(data) > SMALL:
            return None
        small = _small(spec, spec.dtype, data)
        if small is None or not small[1]:
            return None
        feeds[spec.name], rows = small[0].reshape(shape), r
    if len(feeds) != len(plain):  # a name given twice
        return None
    return feeds, rows


def feeds(plan: Plan, tensors: list[Input], max_rows: int) -> dict[str, Any]:
    """Every input of the model, validated and converted (see the module docstring)."""
    by_name = plan.by_name
    names = sorted(by_name)
    if type(tensors) is not list or len(tensors) != len(by_name):
        one = f"exactly one tensor named {names[0]!r}" if len(names) == 1 else f"one tensor per input {names}"
        got = f"{len(tensors)} tensors" if type(tensors) is list else preview(tensors)
        raise InputError(f"'inputs' must be a list of {one}, got {got}")
    out: dict[str, Any] = {}
    for t in tensors:
        spec = by_name.get(t.name) if type(t.name) is str else None
        if spec is None or spec.name in out:
            what = "given twice" if spec is not None else "unknown"
            raise InputError(
                f"{what} input {preview(t.name)}; the model's input"
                + (f" is {names[0]!r}" if len(names) == 1 else f"s are {names}, each once")
            )
        if t.datatype is UNTYPED:
            out[spec.name] = from_json(spec, t.data, max_rows)
            continue
        source = check_datatype(spec, t.datatype)
        shape = check_shape(spec, t.shape, max_rows)
        if t.raw is not None:
            out[spec.name] = from_raw(spec, t.datatype, shape, t.raw)
        else:
            out[spec.name] = from_values(spec, source, shape, t.data)
    return out
