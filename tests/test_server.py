"""The server app in-process: health, metadata, readiness, errors, metrics and the OpenAPI document."""

import json
import time

import jsonschema_rs
import pytest

from oneneuron.schema import Manifest
from serve.http.httpio import INTERNAL
from tests.serve_app import MODELS, client


@pytest.fixture(scope="module")
def api(exported_dir):
    return client(exported_dir)


def test_health_and_server_metadata(api):
    assert api.get("/v2/health/live").json() == {"live": True}
    assert api.get("/v2/health/ready").json() == {"ready": True}
    meta = api.get("/v2").json()
    assert "binary_tensor_data" in meta["extensions"] and meta["name"] and meta["version"]


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("suffix", ["", "/versions/1"])
def test_model_metadata_and_ready(api, exported_dir, name, suffix):
    sha256 = Manifest.load(exported_dir).find(name, "onnx").sha256
    meta = api.get(f"/v2/models/{name}{suffix}").json()
    assert meta == {
        "name": name,
        "versions": ["1"],
        "platform": "onnxruntime_onnx",
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 1]}],
        "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 1]}],
        # no --trust-key (tests/test_signing_serve.py: with one); the version it describes and its sha256
        "parameters": {"signature": "unsigned", "version": "1", "sha256": sha256},
        "version_status": [
            {"version": "1", "state": "READY", "sha256": sha256, "default": True, "reason": ""}
        ],
    }
    assert api.get(f"/v2/models/{name}{suffix}/ready").json() == {"name": name, "ready": True}


@pytest.mark.parametrize(
    "path",
    [
        "/v2/models/nope",
        "/v2/models/nope/ready",
        "/v2/models/keras_linear/versions/2",
        "/v2/models/keras_linear/versions/2/ready",
        "/v1/models/nope",
        "/v1/models/keras_linear/versions/7/metadata",
    ],
)
def test_unknown_model_or_version_is_404(api, path):
    r = api.get(path)
    assert r.status_code == 404 and "error" in r.json()
    assert ("nope" in r.json()["error"]) or ("version" in r.json()["error"])


def test_unknown_route_and_method_are_json(api):
    r = api.get("/v3/whatever")
    assert r.status_code == 404 and r.json()["error"].startswith("no route GET /v3/whatever")
    r = api.delete("/v2/models/keras_linear/infer")
    assert r.status_code == 405 and "error" in r.json() and "POST" in r.headers["allow"]


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/v2/models/keras_linear/infer/", 200),  # the router redirects a trailing slash (307)
        ("/v2/models//infer", 404),  # an empty name or version, extra segments: not the infer routes
        ("/v2/models/keras_linear/versions//infer", 404),
        ("/v2/models/keras_linear/extra/infer", 404),
        ("/v2/models/keras_linear/versions/1/extra/infer", 404),
        ("/v2/models/keras_linear/versions/1/infer", 200),
        ("/v2/models/keras_linear/versions/9/infer", 404),
        ("/v2/models/nope/infer", 404),
    ],
)
def test_infer_paths_match_as_the_router_would(api, path, status):
    """The infer fast lane (serve/http/app.py) takes exactly the router's two infer paths."""
    body = {"inputs": [{"name": "x", "shape": [1, 1], "datatype": "FP32", "data": [10.0]}]}
    r = api.post(path, json=body)
    assert r.status_code == status and (status == 200) == ("outputs" in r.json()), (path, r.text)


def test_not_ready_until_models_load(exported_dir):
    api = client(exported_dir, load_models=False)
    body = {"inputs": [{"name": "x", "shape": [1, 1], "datatype": "FP32", "data": [1.0]}]}
    assert api.get("/v2/health/live").status_code == 200
    for r in (
        api.get("/v2/health/ready"),
        api.get("/v2/models/keras_linear/ready"),
        api.post("/v2/models/keras_linear/infer", json=body),
        api.post("/v1/models/keras_linear:predict", json={"instances": [[1.0]]}),
    ):
        assert r.status_code == 503 and "error" in r.json()
    status = api.get("/v1/models/keras_linear").json()["model_version_status"][0]
    assert status["state"] == "LOADING"


def test_lifespan_loads_models_in_background(exported_dir):
    with client(exported_dir, load_models=False) as api:
        app = api.app
        for _ in range(200):  # the load runs in a worker thread; a few ms
            if app.state.registry.loaded:
                break
            time.sleep(0.02)
        assert api.get("/v2/health/ready").status_code == 200


def test_failed_model_keeps_server_unready_without_leaking_paths(exported_copy):
    (exported_copy / "keras_linear.onnx").write_bytes(b"tampered")
    api = client(exported_copy)
    ready = api.get("/v2/health/ready")
    assert ready.status_code == 503 and "keras_linear (failed)" in ready.json()["error"]
    r = api.post("/v2/models/keras_linear/infer", json={"inputs": []})
    assert r.status_code == 503 and "IntegrityError" in r.json()["error"]
    assert str(exported_copy) not in r.text and "/" not in r.json()["error"]
    assert api.get("/v2/models/torch_linear/ready").status_code == 200
    status = api.get("/v1/models/keras_linear").json()["model_version_status"][0]
    assert status["state"] == "END" and status["status"]["error_code"] == "UNKNOWN"
    text = api.get("/metrics").text
    assert 'serve_model_load_failed{model="keras_linear"} 1.0' in text
    assert 'serve_model_loaded{model="torch_linear"} 1.0' in text and "serve_ready 0.0" in text


def test_internal_fault_is_500_logged_not_returned(exported_dir, caplog):
    api = client(exported_dir)
    model = api.app.state.registry.states["torch_linear"].model
    model.run = model.run_exact = lambda *a: (_ for _ in ()).throw(RuntimeError("boom at /secret/path"))
    r = api.post(
        "/v2/models/torch_linear/infer",
        json={"inputs": [{"name": "x", "shape": [1, 1], "datatype": "FP32", "data": [1]}]},
    )
    assert r.status_code == 500 and r.json() == {"error": INTERNAL}
    assert "boom" in caplog.text and "Traceback" in caplog.text


def test_metrics(api):
    api.post(
        "/v2/models/keras_linear/infer",
        json={"inputs": [{"name": "x", "shape": [3, 1], "datatype": "FP32", "data": [1, 2, 3]}]},
    )
    api.get("/v2/models/nope")
    r = api.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    assert 'serve_requests_total{method="POST",route="/v2/models/{name}/infer",status="200"}' in text
    assert 'serve_requests_total{method="GET",route="/v2/models/{name}",status="404"}' in text
    assert 'serve_request_duration_seconds_bucket{le="0.001",route="/v2/models/{name}/infer"}' in text
    assert 'serve_rows_inferred_total{model="keras_linear",protocol="v2"}' in text
    assert 'serve_model_loaded{model="keras_linear"} 1.0' in text and "serve_ready 1.0" in text
    assert 'serve_model_selftest_abs_error{model="torch_linear"} 0.0' in text


def test_openapi_lists_every_route_and_responses_conform(api):
    doc = api.get("/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    for route in api.app.routes:
        for method in route.methods - {"HEAD"}:
            assert method.lower() in doc["paths"][route.path], (method, route.path)

    def conforms(path, method, response):
        spec = doc["paths"][path][method]["responses"][str(response.status_code)]
        schema = spec["content"]["application/json"]["schema"]
        jsonschema_rs.validator_for({**schema, "components": doc["components"]}).validate(response.json())

    x = {"inputs": [{"name": "x", "shape": [1, 1], "datatype": "FP32", "data": [10]}]}
    for path, concrete, method, kwargs in [
        ("/v2/health/live", "/v2/health/live", "get", {}),
        ("/v2/health/ready", "/v2/health/ready", "get", {}),
        ("/v2", "/v2", "get", {}),
        ("/v2/models/{name}", "/v2/models/keras_linear", "get", {}),
        ("/v2/models/{name}", "/v2/models/nope", "get", {}),
        ("/v2/models/{name}/versions/{version}/ready", "/v2/models/torch_linear/versions/1/ready", "get", {}),
        ("/v2/models/{name}/infer", "/v2/models/keras_linear/infer", "post", {"json": x}),
        ("/v2/models/{name}/infer", "/v2/models/keras_linear/infer", "post", {"content": b"{"}),
        (
            "/v1/models/{name}:predict",
            "/v1/models/torch_linear:predict",
            "post",
            {"json": {"instances": [[1.0]]}},
        ),
        (
            "/v1/models/{name}:predict",
            "/v1/models/torch_linear:predict",
            "post",
            {"json": {"inputs": [1.0, 2.0]}},
        ),
        ("/v1/models/{name}", "/v1/models/torch_linear", "get", {}),
        ("/v1/models/{name}/metadata", "/v1/models/torch_linear/metadata", "get", {}),
    ]:
        conforms(path, method, api.request(method.upper(), concrete, **kwargs))
    json.dumps(doc)  # serialisable as served
