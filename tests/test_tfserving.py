"""TF Serving REST compatibility in-process: :predict (row and columnar), status, metadata, errors."""

import numpy as np
import pytest

from tests.serve_app import MODELS, client, reference


@pytest.fixture(scope="module")
def api(exported_dir):
    return client(exported_dir, max_rows=8)


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize(
    "body, key, xs",
    [
        ({"instances": [[10.0], [1.0]]}, "predictions", [10, 1]),
        ({"instances": [10, 1, -2]}, "predictions", [10, 1, -2]),
        (
            {"instances": [{"x": [10.0]}, {"x": [3.0]}], "signature_name": "serving_default"},
            "predictions",
            [10, 3],
        ),
        ({"inputs": [[10.0], [2.0]]}, "outputs", [10, 2]),
        ({"inputs": {"x": [[10.0]]}}, "outputs", [10]),
    ],
)
@pytest.mark.parametrize("prefix", ["/v1/models/{}", "/v1/models/{}/versions/1"])
def test_predict_matches_loader(api, exported_dir, name, body, key, xs, prefix):
    r = api.post(prefix.format(name) + ":predict", json=body)
    assert r.status_code == 200, r.text
    assert list(r.json()) == [key]
    got = np.asarray(r.json()[key])
    assert got.shape == (len(xs), 1)
    np.testing.assert_allclose(got, reference(exported_dir, name, xs), atol=1e-6, rtol=0)


@pytest.mark.parametrize(
    "body, status, message",
    [
        ({}, 400, "exactly one of 'instances'"),
        ({"instances": [[1]], "inputs": [[1]]}, 400, "exactly one of 'instances'"),
        ({"instances": {"x": 1}}, 400, "'instances' must be a non-empty list"),
        ({"instances": [{"z": [1.0]}]}, 400, "exactly the keys ['x']"),
        ({"inputs": {"z": [1.0]}}, 400, "exactly the keys ['x']"),
        ({"instances": [["a"]]}, 400, "expected"),
        ({"instances": [[1.0, 2.0]]}, 400, "shape [1, 2]; expected [rows, 1]"),
        ({"instances": []}, 400, "empty"),
        ({"instances": [[1e39]]}, 400, "NaN or infinity"),
        ({"instances": [[3e38]]}, 400, "overflows float32"),
        ({"instances": [[1]], "signature_name": "predict"}, 400, "unknown signature_name"),
        ({"instances": [[1]] * 9}, 413, "9 rows exceed the limit of 8"),
    ],
)
def test_predict_errors(api, body, status, message):
    r = api.post("/v1/models/keras_linear:predict", json=body)
    assert r.status_code == status and message in r.json()["error"], r.text


def test_predict_invalid_json_and_unknown_model(api):
    r = api.post("/v1/models/keras_linear:predict", content=b"[")
    assert r.status_code == 400 and "not valid JSON" in r.json()["error"]
    r = api.post("/v1/models/nope:predict", json={"instances": [[1]]})
    assert r.status_code == 404 and "nope" in r.json()["error"]
    r = api.post("/v1/models/keras_linear/versions/3:predict", json={"instances": [[1]]})
    assert r.status_code == 404 and "version '3'" in r.json()["error"]


@pytest.mark.parametrize("suffix", ["", "/versions/1"])
def test_status_and_metadata(api, suffix):
    status = api.get(f"/v1/models/torch_linear{suffix}").json()
    assert status == {
        "model_version_status": [
            {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
        ]
    }
    meta = api.get(f"/v1/models/torch_linear{suffix}/metadata").json()
    assert meta["model_spec"] == {"name": "torch_linear", "signature_name": "", "version": "1"}
    sig = meta["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert sig["inputs"]["x"]["dtype"] == "DT_FLOAT"
    assert [d["size"] for d in sig["inputs"]["x"]["tensor_shape"]["dim"]] == ["-1", "1"]
    assert [d["size"] for d in sig["outputs"]["y"]["tensor_shape"]["dim"]] == ["-1", "1"]
