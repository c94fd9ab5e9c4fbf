"""Named tensors of any signature over KServe V2 (JSON and binary data), shared with TF Serving and gRPC.

The article's models (one float32 input [batch, n], one output) keep their fast path in v2.py;
every other model comes here: several inputs and outputs, each input sent in a V2 datatype that
maps exactly onto the model's dtype (the same type, or one numpy casts "safely": INT8 data for an
int64 input, FP16 for float32; never FP32 for an int input, INT64 for float32, or a number for
a bool), `outputs` selection with `binary_data` per output, and the outputs in their own dtype.
Values then go through `Model.run` (range and finiteness checks, equal rows).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from serve.http import binary
from serve.http.httpio import ApiError, parse_json_object, preview
from serve.inputs import SMALL, all_finite, small_float32
from serve.loader import Model, PredictInputError

# numpy dtype name <-> V2 datatype, for every dtype the loader accepts.
V2_TYPES = {
    "bool": "BOOL",
    "int8": "INT8",
    "int16": "INT16",
    "int32": "INT32",
    "int64": "INT64",
    "uint8": "UINT8",
    "uint16": "UINT16",
    "uint32": "UINT32",
    "uint64": "UINT64",
    "float16": "FP16",
    "float32": "FP32",
    "float64": "FP64",
}
NUMPY_TYPES = {v2: np.dtype(name).newbyteorder("<") for name, v2 in V2_TYPES.items()}
_DATATYPES = {np.dtype(name): v2 for name, v2 in V2_TYPES.items()}  # native dtype -> V2 datatype


def check_range(flat: np.ndarray, name: str, given: str) -> None:
    """400 unless every value of `flat` (parsed JSON or gRPC typed contents, any numeric dtype) is
    representable in the request's declared datatype `given`: INT8 300, UINT8 -1 or FP16 1e6 are
    refused rather than wrapped or rounded to infinity (a finite value that overflows the
    datatype); NaN/inf are left to the model's own finiteness check."""
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
            raise ApiError(
                400, f"input {name!r}: value {bad} is outside {given}'s range [{info.min}, {info.max}]"
            )
        return
    limit = float(np.finfo(target).max)
    if flat.dtype.kind == "f":
        with np.errstate(invalid="ignore"):
            finite = flat[np.isfinite(flat)]
    else:
        finite = flat
    if finite.size and float(np.abs(finite).max()) > limit:
        raise ApiError(
            400, f"input {name!r}: a value beyond ±{limit:.6g} is outside {given}'s range; send {given}"
        )


def has_bool(values: list) -> bool:
    """Whether a (nested) JSON list holds true/false: numpy would take them as 1 and 0 among numbers."""
    if not values:
        return False
    if type(values[0]) is list:
        return any(type(row) is list and has_bool(row) for row in values)
    return bool in set(map(type, values))


@dataclass(frozen=True)
class Spec:
    """One input or output of a model: name, numpy dtype, shape (None for dynamic dims)."""

    name: str
    dtype: np.dtype
    shape: tuple[int | None, ...]


def specs(model: Model) -> tuple[tuple[Spec, ...], tuple[Spec, ...]]:
    """The model's (inputs, outputs) as `Spec`s, computed once per loaded model."""
    cached = model.derived.get("specs")
    if cached is None:
        sig = model.signature
        cached = tuple(
            tuple(Spec(a["name"], np.dtype(a["dtype"]), tuple(a["shape"])) for a in sig[side])
            for side in ("inputs", "outputs")
        )
        model.derived["specs"] = cached
    return cached


def datatype(dtype: np.dtype | str) -> str:
    """The V2 datatype of a numpy dtype (metadata and responses)."""
    return V2_TYPES[np.dtype(dtype).name]


def dims(shape: tuple[int | None, ...]) -> list[int]:
    """A shape for metadata: -1 for a dynamic dimension."""
    return [-1 if d is None else d for d in shape]


def _text(shape: tuple[int | None, ...]) -> str:
    return (
        "["
        + ", ".join("rows" if i == 0 else str(d) if d is not None else "any" for i, d in enumerate(shape))
        + "]"
    )


_EXACT: dict[tuple[np.dtype, str], np.dtype] = {}  # (input dtype, request datatype) -> source dtype


def check_datatype(spec: Spec, given: Any) -> np.dtype:
    """The numpy dtype of a request's datatype when it maps exactly onto the input's; else 400."""
    if type(given) is str:
        known = _EXACT.get((spec.dtype, given))
        if known is not None:
            return known
    wanted = datatype(spec.dtype)
    source = NUMPY_TYPES.get(given) if isinstance(given, str) else None
    if source is None:
        raise ApiError(
            400,
            f"input {spec.name!r}: datatype {preview(given)} is not supported; the model's input is "
            f"{wanted} (one of {', '.join(V2_TYPES.values())})",
        )
    exact = source == spec.dtype or (
        source.kind != "b" and spec.dtype.kind != "b" and np.can_cast(source, spec.dtype, "safe")
    )
    if not exact:
        raise ApiError(
            400,
            f"input {spec.name!r}: datatype {given} does not map exactly onto the model's {wanted} "
            f"(values would change); send {wanted}",
        )
    _EXACT[(spec.dtype, given)] = source  # a closed set of pairs: bounded
    return source


def check_shape(spec: Spec, shape: Any, max_rows: int) -> tuple[int, ...]:
    """A request's shape for `spec`: the model's rank and static dims, 1..max_rows rows; else 400/413."""
    if (
        type(shape) is not list
        or len(shape) != len(spec.shape)
        or any(type(d) is not int or d < 0 for d in shape)
        or any(want is not None and d != want for want, d in zip(spec.shape[1:], shape[1:], strict=True))
    ):
        raise ApiError(400, f"input {spec.name!r}: shape {preview(shape)}; expected {_text(spec.shape)}")
    if shape[0] == 0:
        raise ApiError(400, f"input {spec.name!r}: shape {shape} has no rows; expected at least one")
    if shape[0] > max_rows:
        raise ApiError(
            413,
            f"input {spec.name!r}: {shape[0]} rows exceed the limit of {max_rows} per request "
            "(--max-rows); split the batch",
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
    """JSON values (flat or nested lists) of datatype `source` -> the input's array; else 400."""
    if type(values) is list and len(values) <= SMALL and len(values) == math.prod(shape):
        small = _small(spec, source, values)
        if small is not None:
            return small[0].reshape(shape)
    if not isinstance(values, list):
        raise ApiError(
            400,
            f"input {spec.name!r}: 'data' must be a list (flat or nested), got {preview(values)}; "
            "or send binary_data_size with binary data",
        )
    try:
        arr = np.asarray(values)
    except (ValueError, TypeError, OverflowError):
        raise ApiError(
            400, f"input {spec.name!r}: nested 'data' is not rectangular; give a flat list"
        ) from None
    kinds = {"b": "b", "i": "iu", "u": "iu", "f": "iuf"}[source.kind]
    if arr.dtype.kind not in kinds or (source.kind != "b" and has_bool(values)):
        what = {"b": "true/false", "i": "integers", "u": "integers", "f": "numbers"}[source.kind]
        raise ApiError(
            400,
            f"input {spec.name!r}: 'data' {preview(values)} holds values that are not {what} "
            f"for datatype {datatype(source)}",
        )
    flat = arr.reshape(-1)
    check_range(flat, spec.name, datatype(source))
    return from_flat(spec, source, shape, flat)


def from_flat(spec: Spec, source: np.dtype, shape: tuple[int, ...], flat: np.ndarray) -> np.ndarray:
    """A flat array (JSON or raw bytes, already of kind `source`) -> the input's array of `shape`."""
    count = math.prod(shape)
    if flat.size != count:
        raise ApiError(400, f"input {spec.name!r}: shape {list(shape)} needs {count} values, got {flat.size}")
    if flat.dtype != source:
        with np.errstate(over="ignore", invalid="ignore"):  # beyond the datatype's range: checked below
            cast = flat.astype(source)
        if source.kind in "iu" and not np.array_equal(cast, flat):
            raise ApiError(400, f"input {spec.name!r}: values out of range for {datatype(source)}")
        flat = cast
    return flat.astype(spec.dtype, copy=False).reshape(shape)  # source -> model dtype is exact


def from_bytes(spec: Spec, source: np.dtype, shape: tuple[int, ...], raw: memoryview) -> np.ndarray:
    """Raw little-endian bytes (binary extension, gRPC raw contents) -> the input's array."""
    name = datatype(source)
    if name == "BOOL":
        count = math.prod(shape)
        if len(raw) != count:
            raise ApiError(
                400, f"input {spec.name!r}: {len(raw)} bytes for {count} BOOL elements (1 byte each)"
            )
        flat = np.frombuffer(raw, dtype=np.uint8)
        if flat.size and flat.max() > 1:
            raise ApiError(400, f"input {spec.name!r}: BOOL bytes must be 0 or 1")
        return flat.view(np.bool_).reshape(shape)
    return from_flat(spec, source, shape, binary.decode(raw, name, math.prod(shape), spec.name))


def select_outputs(model: Model, requested: list[tuple[Any, Any]], default: bool) -> list[tuple[Spec, bool]]:
    """(output spec, as binary) for each requested (name, binary flag or None); all outputs if none."""
    outputs = specs(model)[1]
    if not requested:
        return [(s, default) for s in outputs]
    by_name = {s.name: s for s in outputs}
    chosen, seen = [], set()
    for name, as_binary in requested:
        if name not in by_name:
            raise ApiError(400, f"unknown output {preview(name)}; the model's outputs are {sorted(by_name)}")
        if name in seen:
            raise ApiError(400, f"output {name!r} is requested twice; name each output once")
        if as_binary is None:
            as_binary = default
        if not isinstance(as_binary, bool):
            raise ApiError(
                400, f"output {name!r}: binary_data must be true or false, got {preview(as_binary)}"
            )
        seen.add(name)
        chosen.append((by_name[name], as_binary))
    return chosen


def run(
    model: Model, feeds: dict[str, np.ndarray], small_checked_later: bool = False, exact_rows: int = 0
) -> dict[str, np.ndarray]:
    """`Model.run`, with its refusals as 400s and non-finite float outputs refused (HTTP and gRPC).
    `small_checked_later`: outputs of up to SMALL values are left to `encode_v2`, which tests
    the Python numbers it writes anyway (one conversion instead of two). `exact_rows`: the feeds
    are a `V2Request`'s with `exact` set, of that many rows (`Model.run_exact`)."""
    try:
        outputs = model.run_exact(feeds, exact_rows) if exact_rows else model.run(feeds)
    except PredictInputError as exc:
        raise ApiError(400, str(exc)) from None
    for name, out in outputs.items():
        if out.dtype.kind != "f" or (small_checked_later and out.size <= SMALL):
            continue
        if not all_finite(out):
            raise _overflow(name, out)
    return outputs


def _overflow(name: str, out: np.ndarray) -> ApiError:
    return ApiError(400, f"output {name!r} overflows {out.dtype} for this input; send smaller values")


def to_bytes(arr: np.ndarray) -> bytes:
    """An output as raw little-endian bytes (BOOL: one byte each)."""
    return arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()


@dataclass(slots=True)
class V2Request:
    """A decoded V2 infer request for a model of any signature."""

    feeds: dict[str, np.ndarray]
    id: str | None
    outputs: list[tuple[Spec, bool]]
    exact: bool = False  # feeds exactly as the model takes them, floats finite: Model.run_exact

    @property
    def rows(self) -> int:
        return len(next(iter(self.feeds.values())))


def _plain_specs(model: Model) -> tuple[dict[str, tuple[Spec, str, list[int], int]], list[tuple[Spec, bool]]]:
    """Per model, once: {input name: (spec, its V2 datatype, static dims after the batch, values
    per row)} when every input's dims after the batch are static (else empty), and every output
    as JSON (what a request that names none gets)."""
    cached = model.derived.get("v2_plain")
    if cached is None:
        inputs, outputs = specs(model)
        plain = {
            s.name: (s, datatype(s.dtype), list(s.shape[1:]), math.prod(s.shape[1:]))
            for s in inputs
            if s.shape and all(d is not None for d in s.shape[1:])
        }
        cached = (plain if len(plain) == len(inputs) else {}, [(s, False) for s in outputs])
        model.derived["v2_plain"] = cached
    return cached


def _plain_request(model: Model, req: dict[str, Any], max_rows: int) -> V2Request | None:
    """The common request, decoded without the general path's per-field work: only `inputs`, each
    `{name, shape, datatype, data}` in the input's own datatype, a short flat `data`, the same rows
    for all; every output as JSON. None for anything else (the general path validates it)."""
    plain, outputs = _plain_specs(model)
    tensors = req.get("inputs")
    if len(req) != 1 or type(tensors) is not list or len(tensors) != len(plain) or not plain:
        return None
    feeds, rows, finite = {}, -1, True
    for t in tensors:
        if type(t) is not dict or len(t) != 4:
            return None
        name, shape, data = t.get("name"), t.get("shape"), t.get("data")
        found = plain.get(name) if type(name) is str else None
        if (
            found is None
            or t.get("datatype") != found[1]
            or type(shape) is not list
            or type(data) is not list
        ):
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
        small = _small(spec, NUMPY_TYPES[found[1]], data)
        if small is None:
            return None
        feeds[spec.name], rows = small[0].reshape(shape), r
        finite = finite and small[1]
    if len(feeds) != len(plain):  # a name given twice
        return None
    return V2Request(feeds, None, outputs, exact=finite)


def decode_v2(model: Model, body: bytes, header_length: str | None, max_rows: int) -> V2Request:
    """Parse and validate a V2 infer request (JSON, or JSON + binary tensor data) for any signature."""
    if header_length is None:  # JSON only
        head, blob = body, memoryview(b"")
        req = parse_json_object(head, "inference request")
        plain = _plain_request(model, req, max_rows)
        if plain is not None:
            return plain
    else:
        head, blob = binary.split(body, header_length)
        req = parse_json_object(head, "inference request")
    rid, params = req.get("id"), req.get("parameters", {})
    if rid is not None and not isinstance(rid, str):
        raise ApiError(400, f"'id' must be a string, got {type(rid).__name__}")
    if not isinstance(params, dict):
        raise ApiError(400, "'parameters' must be a JSON object")
    inputs = specs(model)[0]
    by_name = {s.name: s for s in inputs}
    tensors = req.get("inputs")
    if not isinstance(tensors, list) or not all(isinstance(t, dict) for t in tensors):
        raise ApiError(
            400,
            f"'inputs' must be a list of tensor objects, one per input {sorted(by_name)}; "
            f"got {preview(tensors)}",
        )
    names = [t.get("name") for t in tensors]
    if not all(isinstance(n, str) for n in names) or sorted(names) != sorted(by_name):
        raise ApiError(
            400, f"'inputs' name {preview(names)}; the model's inputs are {sorted(by_name)}, each once"
        )
    chunks = binary.Chunks(blob)
    feeds = {}
    for tensor in tensors:
        spec = by_name[tensor["name"]]
        source = check_datatype(spec, tensor.get("datatype"))
        shape = check_shape(spec, tensor.get("shape"), max_rows)
        tparams = tensor.get("parameters", {})
        if not isinstance(tparams, dict):
            raise ApiError(400, f"input {spec.name!r}: 'parameters' must be a JSON object")
        size = tparams.get("binary_data_size")
        if size is not None:
            if "data" in tensor:
                raise ApiError(400, f"input {spec.name!r} has both 'data' and binary_data_size; send one")
            feeds[spec.name] = from_bytes(spec, source, shape, chunks.take(size, spec.name))
        else:
            feeds[spec.name] = from_values(spec, source, shape, tensor.get("data"))
    chunks.finish()
    default = params.get("binary_data_output", False)
    if not isinstance(default, bool):
        raise ApiError(400, f"parameter binary_data_output must be true or false, got {preview(default)}")
    requested = req.get("outputs") or []
    if not isinstance(requested, list):
        raise ApiError(
            400, f"'outputs' must be a list of {{\"name\": ...}} objects, got {preview(requested)}"
        )
    pairs = []
    for out in requested:
        p = out.get("parameters", {}) if isinstance(out, dict) else None
        if not isinstance(p, dict):
            raise ApiError(
                400, f'each of \'outputs\' must be {{"name": ..., "parameters": {{...}}}}, got {preview(out)}'
            )
        if p.get("classification"):
            raise ApiError(400, "the classification extension is not supported")
        pairs.append((out.get("name"), p.get("binary_data")))
    return V2Request(feeds, rid, select_outputs(model, pairs, default))


def encode_v2(
    model_name: str, req: V2Request, outputs: dict[str, np.ndarray], version: str
) -> tuple[bytes, dict[str, str]]:
    """The V2 infer response with the requested outputs, each JSON or binary, in its own datatype.
    Refuses (400) a non-finite float output of up to SMALL values (`run(..., small_checked_later)`)."""
    tensors, buffers = [], []
    for spec, as_binary in req.outputs:
        arr = outputs[spec.name]
        tensor: dict[str, Any] = {
            "name": spec.name,
            "datatype": _DATATYPES.get(arr.dtype) or datatype(arr.dtype),
            "shape": list(arr.shape),
        }
        small = arr.ravel().tolist() if arr.size <= SMALL else None  # the checked values, small ones
        # a Python sum of float16/32 values cannot overflow (NaN and inf propagate); float64's can
        if (
            small is not None
            and arr.dtype.kind == "f"
            and not (math.isfinite(sum(small)) if arr.dtype.itemsize <= 4 else all_finite(arr))
        ):
            raise _overflow(spec.name, arr)
        if as_binary:
            raw = to_bytes(arr)
            tensor["parameters"] = {"binary_data_size": len(raw)}
            buffers.append(raw)
        elif small is not None:  # Python numbers: a float32 becomes the same double as below
            tensor["data"] = small
        else:
            flat = arr.reshape(-1)
            tensor["data"] = flat.astype(np.float64) if arr.dtype.kind == "f" else flat  # orjson writes numpy
        tensors.append(tensor)
    header: dict[str, Any] = {"model_name": model_name, "model_version": version, "outputs": tensors}
    if req.id is not None:
        header["id"] = req.id
    return binary.encode(header, buffers)
