"""TensorFlow Serving REST API compatibility: `/v1/models/{name}[/versions/{v}]...`.

Spec: tensorflow.org/tfx/serving/api_rest. `:predict` takes `instances` (row format, one entry per
row: `{"features": [...], "ids": [...]}` per row, or a model with one input its bare values) and
answers `predictions` (one value per row with one output, one `{output: value}` object per row
with several), or `inputs` (columnar: `{"features": [[...]], "ids": [[...]]}`, a bare list for one
input) and answers `outputs` (the list with one output, `{output: list}` with several).
`GET /v1/models/{name}` is the status API and `.../metadata` the signature.

An adapter: the body becomes the engine's `Request` (JSON values without a datatype, converted
to each input's dtype only where exact) and its `Result` the body above.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from serve.engine import Engine, Input
from serve.engine import Request as InferRequest
from serve.engine.core import Result
from serve.engine.dtypes import TF_TYPES
from serve.engine.errors import InputError, TooLarge, preview
from serve.engine.registry import FAILED, LOADING, READY, UNLOADED
from serve.engine.tensors import UNTYPED, plan
from serve.http.config import ServeConfig
from serve.http.httpio import json_response, parse_json_object, read_body
from serve.loader import Model

SIGNATURE = "serving_default"
# Our load states in TF Serving's ModelVersionStatus.State names.
TF_STATES = {LOADING: "LOADING", READY: "AVAILABLE", FAILED: "END", UNLOADED: "END"}


def decode(model: Model, body: dict[str, Any], max_rows: int) -> tuple[InferRequest, str]:
    """The engine request of a :predict body and the response key ("predictions" or "outputs")."""
    signature = body.get("signature_name", SIGNATURE)
    if signature != SIGNATURE:
        raise InputError(f"unknown signature_name {preview(signature)}; the model has {SIGNATURE!r}")
    if ("instances" in body) == ("inputs" in body):
        raise InputError(
            "the body needs exactly one of 'instances' (row format: a list with one entry per row) "
            "or 'inputs' (columnar format: {input name: rows}, or the rows for a one-input model)"
        )
    names = [s.name for s in plan(model).inputs]
    if "instances" in body:
        rows, key = body["instances"], "predictions"
        if not isinstance(rows, list) or not rows:
            raise InputError(
                f"'instances' must be a non-empty list with one entry per row, got {preview(rows)}"
            )
        _limit(len(rows), max_rows)
        if len(names) == 1 and not any(isinstance(r, dict) for r in rows):
            columns = {names[0]: rows}
        else:
            for i, row in enumerate(rows):
                if not isinstance(row, dict) or sorted(row) != sorted(names):
                    raise InputError(
                        f"instances[{i}] must be an object with exactly the keys {names}, got {preview(row)}"
                    )
            columns = {n: [row[n] for row in rows] for n in names}
    else:
        columns, key = body["inputs"], "outputs"
        if len(names) == 1 and isinstance(columns, list):
            columns = {names[0]: columns}
        if not isinstance(columns, dict) or sorted(columns) != sorted(names):
            raise InputError(
                f"'inputs' must be an object with exactly the keys {names} (input name: rows), "
                f"got {preview(columns)}"
            )
        for n in names:
            if not isinstance(columns[n], list):
                raise InputError(f"input {n!r}: 'inputs' needs a list of rows, got {preview(columns[n])}")
            _limit(len(columns[n]), max_rows)
    return InferRequest([Input(n, UNTYPED, None, v) for n, v in columns.items()]), key


def _limit(rows: int, max_rows: int) -> None:
    if rows > max_rows:
        raise TooLarge(
            f"{rows} rows exceed the limit of {max_rows} per request (--max-rows); split the batch"
        )


def encode(key: str, result: Result) -> dict[str, Any]:
    """The :predict response body for the outputs (in the model's output order)."""
    lists = {
        o.name: o.values if o.values is not None and o.array.ndim == 1 else o.array.tolist()
        for o in result.outputs
    }
    if key == "outputs":
        return {key: next(iter(lists.values())) if len(lists) == 1 else lists}
    if len(lists) == 1:
        return {key: next(iter(lists.values()))}
    return {key: [{name: values[i] for name, values in lists.items()} for i in range(result.rows)]}


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


class TFServing:
    """The TF Serving REST route handlers over the engine."""

    def __init__(self, engine: Engine, config: ServeConfig):
        self.engine, self.registry, self.config = engine, engine.registry, config

    async def predict(self, request: Request) -> Response:
        name, version = request.path_params["name"], request.path_params.get("version")
        served = self.engine.served(name, version)  # held to the end: a reload does not change it
        key: list[str] = []
        result = await self.engine.infer(served, self._decode(request, served.model, key), "tfserving")
        # TF Serving's body has one key; the version that answered goes in a header
        return json_response(encode(key[0], result), headers={"model-version": served.label})

    async def _decode(self, request: Request, model: Model, key: list[str]) -> InferRequest:
        raw = (await read_body(request, self.config.max_body_bytes, timeout=self.config.body_timeout))[0]
        req, k = decode(model, parse_json_object(raw), self.config.row_limit)
        key.append(k)
        return req

    async def status(self, request: Request) -> Response:
        name, version = request.path_params["name"], request.path_params.get("version")
        state = self.registry.state(name, version)
        versions = state.versions.values()
        if version is not None:
            versions = [v for v in versions if v.label == version]

        def status(v_state: str, error: str | None) -> dict[str, Any]:
            return {
                "state": TF_STATES[v_state],
                "status": {
                    "error_code": "UNKNOWN" if v_state == FAILED else "OK",
                    "error_message": error or "",
                },
            }

        rows = [
            {"version": v.label} | status(v.state, v.error) for v in sorted(versions, key=lambda v: -v.number)
        ]
        if not rows:  # unloaded (explicit mode), or nothing known yet
            rows = [{"version": "0"} | status(state.state, state.error)]
        return json_response({"model_version_status": rows})

    async def metadata(self, request: Request) -> Response:
        name, version = request.path_params["name"], request.path_params.get("version")
        served = self.engine.served(name, version)
        sig = served.model.signature

        return json_response(
            {
                "model_spec": {"name": name, "signature_name": "", "version": served.label},
                "metadata": {
                    "signature_def": {
                        "signature_def": {
                            SIGNATURE: {
                                "inputs": tensor_info(sig["inputs"]),
                                "outputs": tensor_info(sig["outputs"]),
                                "method_name": "tensorflow/serving/predict",
                            }
                        }
                    }
                },
            }
        )

    def routes(self) -> list[tuple[str, str, Any]]:
        out = []
        for base in ("/v1/models/{name}", "/v1/models/{name}/versions/{version}"):
            out += [
                (base + ":predict", "POST", self.predict),
                (base, "GET", self.status),
                (base + "/metadata", "GET", self.metadata),
            ]
        return out
