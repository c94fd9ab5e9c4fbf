"""TensorFlow Serving REST API compatibility: `/v1/models/{name}[/versions/{v}]...`.

Spec: tensorflow.org/tfx/serving/api_rest. `:predict` takes `instances` (row format, one
entry per row) or `inputs` (columnar) and answers `predictions` / `outputs` respectively;
`GET /v1/models/{name}` is the status API and `.../metadata` the signature.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
from starlette.requests import Request
from starlette.responses import Response

from serve.http import stats, tensors, tfserving_any
from serve.http.config import ServeConfig
from serve.http.httpio import ApiError, json_response, parse_json_object, preview, read_body
from serve.http.registry import FAILED, LOADING, READY, UNLOADED, Registry
from serve.loader import Model, PredictInputError

SIGNATURE = "serving_default"
# Our load states in TF Serving's ModelVersionStatus.State names.
TF_STATES = {LOADING: "LOADING", READY: "AVAILABLE", FAILED: "END", UNLOADED: "END"}


def decode_predict(model: Model, body: dict[str, Any], max_rows: int) -> tuple[np.ndarray, str]:
    """The float32 batch of a :predict body and the response key ("predictions" or "outputs")."""
    tfserving_any.check_format(body, 'e.g. {"inputs": [[10.0]]}; rows: {"instances": [[10.0]]}')
    if "instances" in body:
        data, key = body["instances"], "predictions"
        if not isinstance(data, list):
            raise ApiError(400, "'instances' must be a list with one entry per row, e.g. [[1.0], [2.0]]")
        if data and all(isinstance(row, dict) for row in data):  # named inputs per row
            if any(set(row) != {model.input_name} for row in data):
                raise ApiError(400, f"each instance object must have exactly the key {model.input_name!r}")
            data = [row[model.input_name] for row in data]
    else:
        data, key = body["inputs"], "outputs"
        if isinstance(data, dict):
            if set(data) != {model.input_name}:
                raise ApiError(
                    400,
                    f"'inputs' object must have exactly the key {model.input_name!r}, "
                    f"got {preview(sorted(data))}",
                )
            data = data[model.input_name]
        if not isinstance(data, list):  # a bare number would be a rank-0 tensor, not a batch
            raise ApiError(
                400,
                f"'inputs' must be a list of rows (or {{{model.input_name!r}: [...]}}), e.g. "
                "[[1.0], [2.0]]; got a JSON " + type(data).__name__,
            )
    if isinstance(data, list) and len(data) > max_rows:
        raise ApiError(
            413, f"{len(data)} rows exceed the limit of {max_rows} per request (--max-rows); split the batch"
        )
    try:
        return model.as_batch(data), key
    except PredictInputError as exc:
        raise ApiError(400, str(exc)) from None


class TFServing:
    """The TF Serving REST route handlers over a registry."""

    def __init__(self, registry: Registry, config: ServeConfig):
        self.registry, self.config = registry, config

    async def predict(self, request: Request) -> Response:
        name, version = request.path_params["name"], request.path_params.get("version")
        start = time.perf_counter_ns()
        served = self.registry.served(name, version)  # held to the end: a reload does not change it
        model = served.model
        try:
            body = parse_json_object(
                (await read_body(request, self.config.max_body_bytes, timeout=self.config.body_timeout))[0]
            )
            if model.n_features is None:  # any other signature: serve/http/tfserving_any.py
                feeds, key = tfserving_any.decode(model, body, self.config.row_limit)
                outputs = tensors.run(model, feeds)
                rows = len(next(iter(outputs.values())))
                self.registry.metrics.rows(name, "tfserving", rows)
                stats.ok(served.counts, rows, start)
                return json_response(
                    tfserving_any.encode(key, outputs), headers={"model-version": served.label}
                )
            batch, key = decode_predict(model, body, self.config.row_limit)
            y = model.predict(batch)
            if not (math.isfinite(y.item()) if y.size == 1 else np.isfinite(y).all()):
                raise ApiError(400, "the prediction overflows float32 for this input")
        except ApiError:
            stats.fail(served.counts, start)  # Triton's fail count, per version
            raise
        self.registry.metrics.rows(name, "tfserving", len(y))
        stats.ok(served.counts, len(y), start)
        # TF Serving's body has one key; the version that answered goes in a header
        return json_response({key: y.astype(np.float64)}, headers={"model-version": served.label})

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
        served = self.registry.served(name, version)
        sig = served.model.signature

        return json_response(
            {
                "model_spec": {"name": name, "signature_name": "", "version": served.label},
                "metadata": {
                    "signature_def": {
                        "signature_def": {
                            SIGNATURE: {
                                "inputs": tfserving_any.tensor_info(sig["inputs"]),
                                "outputs": tfserving_any.tensor_info(sig["outputs"]),
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
