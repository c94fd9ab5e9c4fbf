"""Open Inference Protocol (KServe V2) REST routes, with Triton's binary tensor data extension.

Spec: kserve.github.io/website (V2 protocol) and Triton's docs/protocol. Routes:
GET /v2/health/live, /v2/health/ready, /v2; GET /v2/models/{name}[/versions/{v}][/ready];
POST /v2/models/{name}[/versions/{v}]/infer.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from starlette.requests import Request
from starlette.responses import Response

from serve.http import binary, stats
from serve.http import tensors as any_signature
from serve.http.config import ServeConfig
from serve.http.httpio import ApiError, json_response, parse_json_object, preview, read_body
from serve.http.registry import Registry
from serve.inputs import SMALL, clamp_float32, small_float32
from serve.loader import Model, PredictInputError

SERVER_NAME = "one-neuron-serve"
SERVER_VERSION = "1.0.0"
EXTENSIONS = ["binary_tensor_data"]
PLATFORM = "onnxruntime_onnx"
INTEGER_TYPES = {t for t in binary.DTYPES if "INT" in t}


@dataclass(slots=True)
class InferRequest:
    """A decoded V2 infer request."""

    batch: np.ndarray  # float32 (rows, n)
    id: str | None
    outputs: list[tuple[str, bool]]  # (output name, as binary)


def decode_request(model: Model, body: bytes, header_length: str | None, max_rows: int) -> InferRequest:
    """Parse and validate a V2 infer request (JSON, or JSON + binary tensor data) for `model`."""
    head, blob = binary.split(body, header_length)
    req = parse_json_object(head, "inference request")
    rid = req.get("id")
    if rid is not None and not isinstance(rid, str):
        raise ApiError(400, f"'id' must be a string, got {type(rid).__name__}")
    params = req.get("parameters", {})
    if not isinstance(params, dict):
        raise ApiError(400, "'parameters' must be a JSON object")
    inputs = req.get("inputs")
    if not isinstance(inputs, list) or len(inputs) != 1:
        raise ApiError(
            400,
            f"'inputs' must be a list of exactly one tensor named {model.input_name!r}, "
            f"got {preview(inputs)}",
        )
    chunks = binary.Chunks(blob) if header_length is not None else None
    batch = _input(model, inputs[0], chunks, max_rows)
    if chunks is not None:
        chunks.finish()
    outputs = req.get("outputs")
    if outputs is None and not params:  # the common case: every output, as JSON
        return InferRequest(batch, rid, [(model.output_name, False)])
    return InferRequest(batch, rid, _outputs(model, outputs, params))


def _input(model: Model, tensor: Any, chunks: binary.Chunks | None, max_rows: int) -> np.ndarray:
    n = model.n_features
    if not isinstance(tensor, dict):
        raise ApiError(
            400,
            f"an input tensor must be a JSON object with name, shape, datatype and data; "
            f"got {preview(tensor)}",
        )
    name, datatype, shape = tensor.get("name"), tensor.get("datatype"), tensor.get("shape")
    if (
        type(shape) is list
        and shape
        and type(shape[0]) is float
        and shape[0] >= 2**63
        and shape[0].is_integer()
    ):
        shape = [int(shape[0]), *shape[1:]]  # orjson reads integers beyond 64 bits as floats: too many rows
    rows = check_input(model, name, datatype, shape, max_rows)
    params = tensor.get("parameters", {})
    if not isinstance(params, dict):
        raise ApiError(400, f"input {name!r}: 'parameters' must be a JSON object")
    size = params.get("binary_data_size")
    if size is not None:
        if "data" in tensor:
            raise ApiError(400, f"input {name!r} has both 'data' and binary_data_size; send one of them")
        chunks = chunks or binary.Chunks(memoryview(b""))  # binary_data_size without the header
        flat = binary.decode(chunks.take(size, name), datatype, rows * n, name)
    else:
        data = tensor.get("data")
        count = rows * n
        if type(data) is list and len(data) == count <= SMALL and datatype in ("FP32", "FP64"):
            small = small_float32(data)  # a few rows: skip numpy's parse and the errstate cast
            if small is not None:
                return small[0].reshape(rows, n)
        flat = _json_data(data, datatype, count, name)
    return _float32(flat).reshape(rows, n)


def check_input(model: Model, name: Any, datatype: Any, shape: Any, max_rows: int) -> int:
    """Validate an input tensor's name, datatype and shape (HTTP and gRPC alike); its row count."""
    n = model.n_features
    if name != model.input_name:
        raise ApiError(400, f"unknown input {preview(name)}; the model's input is {model.input_name!r}")
    if datatype not in binary.DTYPES:
        raise ApiError(
            400,
            f"input {name!r}: datatype {preview(datatype)} is not supported; expected one of "
            f"{', '.join(binary.DTYPES)} (converted to FP32)",
        )
    if (
        type(shape) is not list
        or len(shape) != 2
        or type(shape[0]) is not int
        or type(shape[1]) is not int
        or shape[0] < 0
        or shape[1] != n
    ):
        raise ApiError(400, f"input {name!r}: shape {preview(shape)}; expected [rows, {n}]")
    rows = shape[0]
    if rows == 0:
        raise ApiError(400, f"input {name!r}: shape {shape} has no rows; expected at least one")
    if rows > max_rows:
        raise ApiError(
            413,
            f"input {name!r}: {preview(rows)} rows exceed the limit of {max_rows} per request "
            "(--max-rows); split the batch",
        )
    return rows


def check_prediction(y: np.ndarray) -> None:
    """400 when the prediction overflowed float32 (HTTP and gRPC alike)."""
    if not (math.isfinite(y.item()) if y.size == 1 else np.isfinite(y).all()):
        raise ApiError(
            400,
            "the prediction overflows float32 for this input; send values within about ±1e38 / |weight|",
        )


def _float32(flat: np.ndarray) -> np.ndarray:
    """Cast to float32; values beyond its range become ±inf (rejected by `Model.predict`)."""
    if flat.dtype == np.float32:
        return flat
    if flat.size == 1:  # the common batch-1 case, without np.errstate's cost
        return np.array(clamp_float32(flat.item()), dtype=np.float32)
    with np.errstate(over="ignore", invalid="ignore"):
        return flat.astype(np.float32)


def _json_data(data: Any, datatype: str, count: int, name: str) -> np.ndarray:
    if not isinstance(data, list):
        raise ApiError(
            400,
            f"input {name!r}: 'data' must be a list of numbers (flat or nested), got "
            f"{preview(data)}; or send binary_data_size with binary data",
        )
    try:
        arr = np.asarray(data)
    except (ValueError, TypeError, OverflowError):
        raise ApiError(
            400,
            f"input {name!r}: nested 'data' is not rectangular; give a flat list of "
            f"{count} numbers or nested lists matching the shape",
        ) from None
    if (
        arr.dtype.kind not in "iuf"
        or (datatype in INTEGER_TYPES and arr.dtype.kind == "f")
        or any_signature.has_bool(data)
    ):
        kinds = "integers" if datatype in INTEGER_TYPES else "numbers"
        raise ApiError(
            400,
            f"input {name!r}: 'data' {preview(data)} holds values that are not {kinds} "
            f"for datatype {datatype}",
        )
    if arr.size != count:
        raise ApiError(400, f"input {name!r}: shape needs {count} values, 'data' has {arr.size}")
    flat = arr.reshape(-1)
    any_signature.check_range(flat, name, datatype)
    return flat


def _outputs(model: Model, outputs: Any, params: dict[str, Any]) -> list[tuple[str, bool]]:
    default = params.get("binary_data_output", False)
    if not isinstance(default, bool):
        raise ApiError(400, f"parameter binary_data_output must be true or false, got {preview(default)}")
    if outputs is None or outputs == []:
        return [(model.output_name, default)]
    if not isinstance(outputs, list):
        raise ApiError(400, f"'outputs' must be a list of {{\"name\": ...}} objects, got {preview(outputs)}")
    chosen = []
    for out in outputs:
        name = out.get("name") if isinstance(out, dict) else None
        if name != model.output_name:
            raise ApiError(
                400, f"unknown output {preview(name)}; the model's output is {model.output_name!r}"
            )
        p = out.get("parameters", {})
        if not isinstance(p, dict):
            raise ApiError(400, f"output {name!r}: 'parameters' must be a JSON object")
        if p.get("classification"):
            raise ApiError(400, "the classification extension is not supported: the model is a regression")
        as_binary = p.get("binary_data", default)
        if not isinstance(as_binary, bool):
            raise ApiError(
                400, f"output {name!r}: binary_data must be true or false, got {preview(as_binary)}"
            )
        chosen.append((name, as_binary))
    return chosen


def encode_response(
    model_name: str, req: InferRequest, y: np.ndarray, version: str
) -> tuple[bytes, dict[str, str]]:
    """The V2 infer response for prediction `y` (float32 rows x 1), JSON or JSON + binary."""
    outputs, buffers = [], []
    for name, as_binary in req.outputs:
        tensor: dict[str, Any] = {"name": name, "datatype": "FP32", "shape": list(y.shape)}
        if as_binary:
            raw = y.astype("<f4", copy=False).tobytes()
            tensor["parameters"] = {"binary_data_size": len(raw)}
            buffers.append(raw)
        else:
            tensor["data"] = y.reshape(-1).astype(np.float64)  # orjson writes it at C speed
        outputs.append(tensor)
    header: dict[str, Any] = {"model_name": model_name, "model_version": version, "outputs": outputs}
    if req.id is not None:
        header["id"] = req.id
    return binary.encode(header, buffers)


def _variant_parameters(entry) -> dict[str, str]:
    """A variant (export.optimize) says what it is a variant of in its model metadata's parameters."""
    v = entry.variant
    if v is None:
        return {}
    return {"variant_of": v.parent, "variant_method": v.method, "variant_parent_sha256": v.parent_sha256}


def ready_versions(registry: Registry, name: str) -> list[str]:
    """The version labels `name` serves (ready), oldest first."""
    return [v.label for v in registry.state(name).versions.values() if v.model is not None]


def version_status(registry: Registry, name: str) -> list[dict[str, Any]]:
    """Every version the server knows of `name`: its state, sha256 and why it failed (if it did), or,
    for the default while a rolled-back manifest is refused, why it is still the default."""
    state = registry.state(name)
    default = state.default
    return [
        {
            "version": v.label,
            "state": v.state,
            "sha256": v.entry.sha256,
            "default": v is default,
            "reason": registry.reason(state, v),
        }
        for v in state.versions.values()
    ]


class V2:
    """The V2 route handlers over a registry."""

    def __init__(self, registry: Registry, config: ServeConfig):
        self.registry, self.config = registry, config

    async def live(self, request: Request) -> Response:
        return json_response({"live": True})

    async def ready(self, request: Request) -> Response:
        if not self.registry.ready:
            waiting = [
                f"{s.name} ({s.state.lower()})" for s in self.registry.states.values() if s.state != "READY"
            ]
            raise ApiError(503, f"not ready: {', '.join(waiting)}")
        return json_response({"ready": True})

    async def server_metadata(self, request: Request) -> Response:
        return json_response({"name": SERVER_NAME, "version": SERVER_VERSION, "extensions": EXTENSIONS})

    async def model_metadata(self, request: Request) -> Response:
        name, version = request.path_params["name"], request.path_params.get("version")
        served = self.registry.served(name, version)
        model = served.model
        sig = model.signature

        def tensors(args):
            return [
                {
                    "name": a["name"],
                    "datatype": any_signature.datatype(a["dtype"]),
                    "shape": any_signature.dims(a["shape"]),
                }
                for a in args
            ]

        return json_response(
            {
                "name": name,
                "versions": ready_versions(self.registry, name),
                "platform": PLATFORM,
                "inputs": tensors(sig["inputs"]),
                "outputs": tensors(sig["outputs"]),
                "parameters": (
                    {"signature": "verified", "signature_key": model.signed_by}
                    if model.signed_by
                    else {"signature": "unsigned"}
                )
                | {"version": served.label, "sha256": served.entry.sha256}
                | _variant_parameters(served.entry),
                "version_status": version_status(self.registry, name),
            }
        )

    async def model_ready(self, request: Request) -> Response:
        name, version = request.path_params["name"], request.path_params.get("version")
        self.registry.model(name, version)  # 404 / 503
        return json_response({"name": name, "ready": True})

    async def infer(self, request: Request) -> Response:
        name, version = request.path_params["name"], request.path_params.get("version")
        start = time.perf_counter_ns()
        served = self.registry.served(name, version)  # held to the end: a reload does not change it
        model = served.model
        if model.n_features is None:  # any other signature: serve/http/tensors.py
            try:
                body, header_length = await read_body(
                    request, self.config.max_body_bytes, binary.HEADER_RAW, timeout=self.config.body_timeout
                )
                general = any_signature.decode_v2(model, body, header_length, self.config.row_limit)
                outputs = any_signature.run(
                    model, general.feeds, small_checked_later=True, exact_rows=general.exact and general.rows
                )
                content, headers = any_signature.encode_v2(name, general, outputs, served.label)
            except ApiError:
                stats.fail(served.counts, start)
                raise
            rows = general.rows
            self.registry.metrics.rows(name, "v2", rows)
            stats.ok(served.counts, rows, start)
            media = "application/octet-stream" if headers else "application/json"
            return Response(content, media_type=media, headers=headers or None)
        try:
            body, header_length = await read_body(
                request, self.config.max_body_bytes, binary.HEADER_RAW, timeout=self.config.body_timeout
            )
            req = decode_request(model, body, header_length, self.config.row_limit)
            try:
                y = model.predict(req.batch)  # validates: finite float32 (rows, n)
            except PredictInputError as exc:
                raise ApiError(400, f"input {model.input_name!r}: {exc}") from None
            check_prediction(y)
        except ApiError:
            stats.fail(served.counts, start)  # Triton's fail count, per version
            raise
        self.registry.metrics.rows(name, "v2", len(y))
        stats.ok(served.counts, len(y), start)
        content, headers = encode_response(name, req, y, served.label)
        if headers:
            return Response(content, media_type="application/octet-stream", headers=headers)
        return Response(content, media_type="application/json")

    def routes(self) -> list[tuple[str, str, Any]]:
        """(path template, method, handler) for every V2 route."""
        out = [
            ("/v2/health/live", "GET", self.live),
            ("/v2/health/ready", "GET", self.ready),
            ("/v2", "GET", self.server_metadata),
        ]
        for base in ("/v2/models/{name}", "/v2/models/{name}/versions/{version}"):
            out += [
                (base, "GET", self.model_metadata),
                (base + "/ready", "GET", self.model_ready),
                (base + "/infer", "POST", self.infer),
            ]
        return out
