"""The OpenAPI 3.0 document served at `GET /openapi.json`: every route, request and response.

Hand-written (the app is plain Starlette). Schemas follow the KServe V2 REST spec, Triton's
binary tensor data extension and TF Serving's REST API; tests check that responses conform.
"""

from __future__ import annotations

from typing import Any

from serve.engine.dtypes import WIRE_TYPES as DTYPES

JSON = "application/json"
ERROR_CODES = {
    "400": "bad request",
    "404": "unknown model or version",
    "408": "request body not received within --body-timeout",
    "413": "request too large",
    "500": "internal fault (logged by the server)",
    "503": "not ready",
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _obj(required: list[str], **props: Any) -> dict[str, Any]:
    return {"type": "object", "required": required, "properties": props}


def _responses(
    ok: str, schema: dict[str, Any], errors: tuple[str, ...], ok_extra: dict | None = None
) -> dict:
    out = {"200": {"description": ok, "content": {JSON: {"schema": schema}, **(ok_extra or {})}}}
    for code in (*errors, "500"):
        out[code] = {"description": ERROR_CODES[code], "content": {JSON: {"schema": _ref("Error")}}}
    return out


def _schemas() -> dict[str, Any]:
    number_data = {
        "type": "array",
        "description": "flat, or nested to match shape; row-major",
        "items": {"oneOf": [{"type": "number"}, {"type": "boolean"}, {"type": "array"}]},
    }
    shape = {"type": "array", "items": {"type": "integer", "minimum": 0}}
    params = {"type": "object", "additionalProperties": True}
    tensor_meta = _obj(
        ["name", "datatype", "shape"],
        name={"type": "string"},
        datatype={"type": "string"},
        shape={"type": "array", "items": {"type": "integer"}},
    )
    return {
        "Error": _obj(["error"], error={"type": "string"}),
        "Live": _obj(["live"], live={"type": "boolean"}),
        "Ready": _obj(["ready"], ready={"type": "boolean"}),
        "ModelReady": _obj(["name", "ready"], name={"type": "string"}, ready={"type": "boolean"}),
        "ServerMetadata": _obj(
            ["name", "version", "extensions"],
            name={"type": "string"},
            version={"type": "string"},
            extensions={"type": "array", "items": {"type": "string"}},
        ),
        "TensorMetadata": tensor_meta,
        "ModelMetadata": _obj(
            ["name", "versions", "platform", "inputs", "outputs"],
            name={"type": "string"},
            versions={"type": "array", "items": {"type": "string"}},
            platform={"type": "string"},
            inputs={"type": "array", "items": _ref("TensorMetadata")},
            outputs={"type": "array", "items": _ref("TensorMetadata")},
            parameters=_obj(
                ["signature", "version", "sha256"],
                signature={"type": "string", "enum": ["verified", "unsigned"]},
                signature_key={"type": "string", "description": "sha256 of the trusted public key's PEM"},
                version={"type": "string", "description": "the version this metadata describes"},
                sha256={"type": "string", "description": "that version's stored file's sha256"},
            ),
            version_status={"type": "array", "items": _ref("VersionStatus")},
        ),
        "VersionStatus": _obj(
            ["version", "state", "sha256", "default", "reason"],
            version={"type": "string"},
            state={"type": "string", "enum": ["LOADING", "READY", "FAILED"]},
            sha256={"type": "string"},
            default={"type": "boolean", "description": "what routes without /versions/{v} serve"},
            reason={"type": "string", "description": "why it failed (never served)"},
        ),
        "RepositoryIndexRequest": _obj([], ready={"type": "boolean"}),
        "RepositoryIndex": {
            "type": "array",
            "items": _obj(
                ["name", "state"],
                name={"type": "string"},
                version={"type": "string"},
                state={"type": "string"},
                reason={"type": "string"},
            ),
        },
        "Empty": {"type": "object"},
        "ModelStats": _obj(["model_stats"], model_stats={"type": "array", "items": {"type": "object"}}),
        "InferInput": _obj(
            ["name", "shape", "datatype"],
            name={"type": "string"},
            shape=shape,
            datatype={"type": "string", "enum": list(DTYPES)},
            parameters={**params, "properties": {"binary_data_size": {"type": "integer", "minimum": 0}}},
            data=number_data,
        ),
        "InferRequestedOutput": _obj(
            ["name"],
            name={"type": "string"},
            parameters={**params, "properties": {"binary_data": {"type": "boolean"}}},
        ),
        "InferRequest": _obj(
            ["inputs"],
            id={"type": "string"},
            parameters={**params, "properties": {"binary_data_output": {"type": "boolean"}}},
            inputs={"type": "array", "items": _ref("InferInput"), "minItems": 1},
            outputs={"type": "array", "items": _ref("InferRequestedOutput")},
        ),
        "InferOutput": _obj(
            ["name", "shape", "datatype"],
            name={"type": "string"},
            shape=shape,
            datatype={"type": "string"},
            parameters=params,
            data={"type": "array", "items": {"oneOf": [{"type": "number"}, {"type": "boolean"}]}},
        ),
        "InferResponse": _obj(
            ["model_name", "outputs"],
            model_name={"type": "string"},
            model_version={"type": "string"},
            id={"type": "string"},
            outputs={"type": "array", "items": _ref("InferOutput")},
        ),
        "PredictRequest": {
            "type": "object",
            "description": "exactly one of instances (rows) or inputs (columnar)",
            "properties": {
                "signature_name": {"type": "string", "enum": ["serving_default"]},
                "instances": {"type": "array"},
                "inputs": {},
            },
        },
        "PredictResponse": {
            "type": "object",
            "description": "one output: its rows; several: {output: value} per row (instances) "
            "or {output: rows} (inputs)",
            "properties": {
                "predictions": {"type": "array"},
                "outputs": {"oneOf": [{"type": "array"}, {"type": "object"}]},
            },
        },
        "ModelStatus": _obj(
            ["model_version_status"],
            model_version_status={
                "type": "array",
                "items": _obj(
                    ["version", "state", "status"],
                    version={"type": "string"},
                    state={"type": "string"},
                    status=_obj(
                        ["error_code", "error_message"],
                        error_code={"type": "string"},
                        error_message={"type": "string"},
                    ),
                ),
            },
        ),
        "TFMetadata": _obj(
            ["model_spec", "metadata"], model_spec={"type": "object"}, metadata={"type": "object"}
        ),
    }


def _op(
    summary: str, responses: dict, body: dict | None = None, params: list | None = None
) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "responses": responses}
    if params:
        op["parameters"] = params
    if body:
        op["requestBody"] = body
    return op


def document(models: list[str]) -> dict[str, Any]:
    """The OpenAPI document for a server serving `models`."""
    name = {"name": "name", "in": "path", "required": True, "schema": {"type": "string", "enum": models}}
    version = {
        "name": "version",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "pattern": "^[0-9]{1,9}$"},
    }
    header = {
        "name": "Inference-Header-Content-Length",
        "in": "header",
        "required": False,
        "description": "binary tensor data extension: size of the JSON header before the raw tensors",
        "schema": {"type": "integer", "minimum": 0},
    }
    binary = {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}
    infer_body = {"required": True, "content": {JSON: {"schema": _ref("InferRequest")}, **binary}}
    predict_body = {"required": True, "content": {JSON: {"schema": _ref("PredictRequest")}}}
    paths: dict[str, Any] = {
        "/v2/health/live": {"get": _op("server is live", _responses("live", _ref("Live"), ()))},
        "/v2/health/ready": {
            "get": _op(
                "every model loaded and passed its self-test", _responses("ready", _ref("Ready"), ("503",))
            )
        },
        "/v2": {"get": _op("server metadata", _responses("metadata", _ref("ServerMetadata"), ()))},
        "/metrics": {
            "get": _op(
                "Prometheus metrics",
                {
                    "200": {
                        "description": "text exposition format",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
            )
        },
        "/openapi.json": {
            "get": _op(
                "this document",
                {"200": {"description": "OpenAPI 3.0", "content": {JSON: {"schema": {"type": "object"}}}}},
            )
        },
    }
    for base, params in (
        ("/v2/models/{name}", [name]),
        ("/v2/models/{name}/versions/{version}", [name, version]),
    ):
        paths[base] = {
            "get": _op(
                "model metadata", _responses("metadata", _ref("ModelMetadata"), ("404", "503")), params=params
            )
        }
        paths[base + "/ready"] = {
            "get": _op("model ready", _responses("ready", _ref("ModelReady"), ("404", "503")), params=params)
        }
        paths[base + "/infer"] = {
            "post": _op(
                "inference (JSON, or JSON + binary tensor data)",
                _responses(
                    "result", _ref("InferResponse"), ("400", "404", "408", "413", "503"), ok_extra=binary
                ),
                infer_body,
                params + [header],
            )
        }
    repo_body = {"required": False, "content": {JSON: {"schema": _ref("RepositoryIndexRequest")}}}
    paths["/v2/repository/index"] = {
        "post": _op(
            "every model version and its state (Triton repository API)",
            _responses("index", _ref("RepositoryIndex"), ("400",)),
            repo_body,
        )
    }
    for action in ("load", "unload"):
        paths[f"/v2/repository/models/{{name}}/{action}"] = {
            "post": _op(
                f"{action} a model (--model-control explicit; 400 in other modes)",
                _responses(action, _ref("Empty"), ("400", "404", "503")),
                params=[name],
            )
        }
    for base, params in (
        ("/v2/models/{name}", [name]),
        ("/v2/models/{name}/versions/{version}", [name, version]),
    ):
        paths[base + "/stats"] = {
            "get": _op(
                "inference statistics (Triton's shape)",
                _responses("stats", _ref("ModelStats"), ("404",)),
                params=params,
            )
        }
    for base, params in (
        ("/v1/models/{name}", [name]),
        ("/v1/models/{name}/versions/{version}", [name, version]),
    ):
        paths[base + ":predict"] = {
            "post": _op(
                "TF Serving predict",
                _responses("predictions", _ref("PredictResponse"), ("400", "404", "408", "413", "503")),
                predict_body,
                params,
            )
        }
        paths[base] = {
            "get": _op(
                "TF Serving model status", _responses("status", _ref("ModelStatus"), ("404",)), params=params
            )
        }
        paths[base + "/metadata"] = {
            "get": _op(
                "TF Serving model metadata",
                _responses("metadata", _ref("TFMetadata"), ("404", "503")),
                params=params,
            )
        }
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "one-neuron-serve",
            "version": "1.0.0",
            "description": "Open Inference Protocol (KServe V2) REST with Triton's binary tensor data "
            "extension, and TF Serving's REST predict API, for the exported ONNX models.",
        },
        "paths": paths,
        "components": {"schemas": _schemas()},
    }
