"""Open Inference Protocol (KServe V2) REST routes, with Triton's binary tensor data extension.

Spec: kserve.github.io/website (V2 protocol) and Triton's docs/protocol. Routes:
GET /v2/health/live, /v2/health/ready, /v2; GET /v2/models/{name}[/versions/{v}][/ready];
POST /v2/models/{name}[/versions/{v}]/infer.

An adapter: infer converts the V2 JSON (+ binary) body into the engine's `Request` and its
`Result` back; validation, the run, checks and statistics are the engine's (serve/engine/).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from starlette.requests import Request
from starlette.responses import Response

from serve.engine import Engine, Input
from serve.engine import Request as InferRequest
from serve.engine.core import Result
from serve.engine.dtypes import datatype
from serve.engine.errors import InputError, Unavailable, preview
from serve.engine.registry import Registry
from serve.engine.tensors import dims, to_bytes
from serve.http import binary
from serve.http.config import ServeConfig
from serve.http.httpio import json_response, parse_json_object, read_body

SERVER_NAME = "one-neuron-serve"
SERVER_VERSION = "1.0.0"
EXTENSIONS = ["binary_tensor_data"]
PLATFORM = "onnxruntime_onnx"


def decode_request(body: bytes, header_length: str | None) -> InferRequest:
    """A V2 infer request (JSON, or JSON + binary tensor data) as the engine's `Request`."""
    if header_length is None:  # JSON only
        req = parse_json_object(body, "inference request")
        tensors = req.get("inputs")
        if len(req) == 1 and type(tensors) is list:  # the common request: only inputs, plain tensors
            inputs = []
            for t in tensors:
                if type(t) is not dict or len(t) != 4 or "data" not in t:
                    break
                inputs.append(Input(t.get("name"), t.get("datatype"), t.get("shape"), t["data"]))
            else:
                return InferRequest(inputs)
        blob = memoryview(b"")
    else:
        head, blob = binary.split(body, header_length)
        req = parse_json_object(head, "inference request")
    rid, params = req.get("id"), req.get("parameters", {})
    if rid is not None and not isinstance(rid, str):
        raise InputError(f"'id' must be a string, got {type(rid).__name__}")
    if not isinstance(params, dict):
        raise InputError("'parameters' must be a JSON object")
    tensors = req.get("inputs")
    if not isinstance(tensors, list):
        return InferRequest(tensors)  # the engine says what the model's inputs are
    chunks = binary.Chunks(blob)
    inputs = []
    for tensor in tensors:
        if not isinstance(tensor, dict):
            raise InputError(
                "an input tensor must be a JSON object with name, shape, datatype and data; "
                f"got {preview(tensor)}"
            )
        name = tensor.get("name")
        tparams = tensor.get("parameters", {})
        if not isinstance(tparams, dict):
            raise InputError(f"input {preview(name)}: 'parameters' must be a JSON object")
        size = tparams.get("binary_data_size")
        raw = None
        if size is not None:
            if "data" in tensor:
                raise InputError(
                    f"input {preview(name)} has both 'data' and binary_data_size; send one of them"
                )
            raw = chunks.take(size, name)
        inputs.append(Input(name, tensor.get("datatype"), tensor.get("shape"), tensor.get("data"), raw))
    chunks.finish()
    default = params.get("binary_data_output", False)
    if not isinstance(default, bool):
        raise InputError(f"parameter binary_data_output must be true or false, got {preview(default)}")
    requested = req.get("outputs") or []
    if not isinstance(requested, list):
        raise InputError(f"'outputs' must be a list of {{\"name\": ...}} objects, got {preview(requested)}")
    pairs = []
    for out in requested:
        p = out.get("parameters", {}) if isinstance(out, dict) else None
        if not isinstance(p, dict):
            raise InputError(
                f'each of \'outputs\' must be {{"name": ..., "parameters": {{...}}}}, got {preview(out)}'
            )
        if p.get("classification"):
            raise InputError("the classification extension is not supported")
        pairs.append((out.get("name"), p.get("binary_data")))
    return InferRequest(inputs, rid, pairs, default)


def encode_response(model_name: str, result: Result) -> tuple[bytes, dict[str, str]]:
    """The V2 infer response: each requested output as JSON or binary, in its own datatype."""
    tensors, buffers = [], []
    for out in result.outputs:
        arr = out.array
        tensor: dict[str, Any] = {"name": out.name, "datatype": out.datatype, "shape": list(arr.shape)}
        if out.binary:
            raw = to_bytes(arr)
            tensor["parameters"] = {"binary_data_size": len(raw)}
            buffers.append(raw)
        elif out.values is not None:  # Python numbers: a float32 becomes the same double as below
            tensor["data"] = out.values
        else:
            flat = arr.reshape(-1)
            tensor["data"] = flat.astype(np.float64) if arr.dtype.kind == "f" else flat  # orjson writes numpy
        tensors.append(tensor)
    header: dict[str, Any] = {
        "model_name": model_name,
        "model_version": result.version.label,
        "outputs": tensors,
    }
    if result.id is not None:
        header["id"] = result.id
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
    """The V2 route handlers over the engine."""

    def __init__(self, engine: Engine, config: ServeConfig):
        self.engine, self.registry, self.config = engine, engine.registry, config

    async def live(self, request: Request) -> Response:
        return json_response({"live": True})

    async def ready(self, request: Request) -> Response:
        if not self.registry.ready:
            waiting = [
                f"{s.name} ({s.state.lower()})" for s in self.registry.states.values() if s.state != "READY"
            ]
            raise Unavailable(f"not ready: {', '.join(waiting)}")
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
                    "datatype": datatype(a["dtype"]),
                    "shape": dims(a["shape"]),
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
        served = self.engine.served(name, version)  # held to the end: a reload does not change it
        result = await self.engine.infer(served, self._decode(request), "v2")
        content, headers = encode_response(name, result)
        if headers:
            return Response(content, media_type="application/octet-stream", headers=headers)
        return Response(content, media_type="application/json")

    async def _decode(self, request: Request) -> InferRequest:
        body, header_length = await read_body(
            request, self.config.max_body_bytes, binary.HEADER_RAW, timeout=self.config.body_timeout
        )
        return decode_request(body, header_length)

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
