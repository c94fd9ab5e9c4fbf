"""A model with two inputs (float32 features [batch, 3], int64 ids [batch, 1]) and two outputs through the
server: V2 JSON and binary (bodies built and parsed by tritonclient.http), output selection, exact
datatype mapping, TF Serving row and columnar formats, metadata, the general self-test, and gRPC
(raw and typed contents) against a real `python -m serve` (issue 11, section 4)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from oneneuron.errors import IntegrityError
from serve import load
from tests.anysig_helpers import NAME, SELFTEST_INPUTS, anysig_dir, reference
from tests.serve_app import client

URL = f"/v2/models/{NAME}/infer"
FEATURES = np.array([[1.0, 2.0, 3.0], [0.5, -4.0, 2.25], [10.0, 0.0, -1.0]], dtype=np.float32)
IDS = np.array([[3], [-2], [40]], dtype=np.int64)


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    return anysig_dir(tmp_path_factory.mktemp("anysig"))


@pytest.fixture(scope="module")
def api(artifacts):
    return client(artifacts, max_rows=8, max_body_bytes=65536)


def expected(features=FEATURES, ids=IDS):
    return reference(features, ids)


def test_loader_runs_the_general_selftest_and_refuses_a_wrong_one(tmp_path, artifacts):
    model = load(NAME, artifacts)
    want = reference(SELFTEST_INPUTS["features"], SELFTEST_INPUTS["ids"])
    e, a = model.selftest()
    assert a == pytest.approx(e, abs=1e-5) and e in np.concatenate([v.ravel() for v in want.values()])
    bad = {
        "inputs": SELFTEST_INPUTS,
        "outputs": {"score": [[0.0], [0.0]]},
        "atol": 1e-5,
        "rtol": 1e-6,
    }
    with pytest.raises(IntegrityError, match="self-test output 'score' expected 0.0"):
        load(NAME, anysig_dir(tmp_path / "bad", selftest=bad))
    with pytest.raises(ValueError, match="bool; expected numbers"):
        model.run({"features": [[True, False, True]], "ids": [[1]]})


def test_run_fast_path_for_exact_feeds_agrees_with_the_general_one(artifacts, monkeypatch):
    """Exact feeds (the inputs' dtypes and shapes, C-contiguous) skip the conversions; everything
    else takes the general path; both give the same outputs, and both refuse the same input."""
    import serve.model

    model = load(NAME, artifacts)
    with monkeypatch.context() as m:
        m.setattr(serve.model, "_exact", lambda *a: pytest.fail("exact feeds were converted"))
        exact = model.run({"features": FEATURES, "ids": IDS})
    converted = model.run({"features": FEATURES.astype(np.float64).tolist(), "ids": IDS.astype(np.int32)})
    strided = model.run({"features": np.asfortranarray(FEATURES), "ids": IDS})
    for got in (exact, converted, strided):
        assert list(got) == ["score", "pair"]
        for name, want in expected().items():
            np.testing.assert_allclose(got[name], want, rtol=1e-6)
    nan = FEATURES.copy()
    nan[2, 1] = np.nan
    bad = [
        ({"features": nan, "ids": IDS}, "NaN or infinity"),
        ({"features": FEATURES, "ids": IDS[:2]}, "every input needs the same number of rows"),
        ({"features": FEATURES[:0], "ids": IDS[:0]}, "got 0 rows"),
        ({"features": FEATURES, "ids": IDS, "extra": IDS}, "unknown \\['extra'\\]"),
    ]
    for feeds, message in bad:
        with pytest.raises(ValueError, match=message):
            model.run(feeds)


def test_metadata_has_real_datatypes_and_shapes(api):
    meta = api.get(f"/v2/models/{NAME}").json()
    assert [(t["name"], t["datatype"], t["shape"]) for t in meta["inputs"]] == [
        ("features", "FP32", [-1, 3]),
        ("ids", "INT64", [-1, 1]),
    ]
    assert [(t["name"], t["datatype"], t["shape"]) for t in meta["outputs"]] == [
        ("score", "FP32", [-1, 1]),
        ("pair", "FP32", [-1, 2]),
    ]
    tf = api.get(f"/v1/models/{NAME}/metadata").json()["metadata"]["signature_def"]["signature_def"]
    inputs = tf["serving_default"]["inputs"]
    assert inputs["ids"]["dtype"] == "DT_INT64" and inputs["features"]["dtype"] == "DT_FLOAT"
    assert [d["size"] for d in inputs["features"]["tensor_shape"]["dim"]] == ["-1", "3"]


@pytest.mark.parametrize("binary_input", [True, False])
@pytest.mark.parametrize("binary_output", [True, False, None])
def test_tritonclient_bodies_for_two_inputs(api, binary_input, binary_output):
    a = httpclient.InferInput("features", list(FEATURES.shape), "FP32")
    a.set_data_from_numpy(FEATURES, binary_data=binary_input)
    b = httpclient.InferInput("ids", list(IDS.shape), "INT64")
    b.set_data_from_numpy(IDS, binary_data=binary_input)
    outputs = None
    if binary_output is not None:  # pair in the other encoding than score: per-output binary_data
        outputs = [
            httpclient.InferRequestedOutput("score", binary_data=binary_output),
            httpclient.InferRequestedOutput("pair", binary_data=not binary_output),
        ]
    body, json_size = httpclient.InferenceServerClient.generate_request_body([a, b], outputs=outputs)
    headers = {} if json_size is None else {"Inference-Header-Content-Length": str(json_size)}
    r = api.post(URL, content=body, headers=headers)
    assert r.status_code == 200, r.text
    length = r.headers.get("inference-header-content-length")
    result = httpclient.InferResult.from_response_body(r.content, header_length=length and int(length))
    for name, value in expected().items():
        np.testing.assert_allclose(result.as_numpy(name), value, rtol=1e-6, atol=1e-6)
    kinds = {o["name"]: "parameters" in o for o in result.get_response()["outputs"]}
    if binary_output is not None:
        assert kinds == {"score": binary_output, "pair": not binary_output}


def test_only_requested_outputs_and_narrower_datatypes(api):
    body = {
        "id": "r1",
        "inputs": [
            {"name": "ids", "datatype": "INT8", "shape": [3, 1], "data": IDS.ravel().tolist()},
            {"name": "features", "datatype": "FP16", "shape": [3, 3], "data": FEATURES.tolist()},
        ],
        "outputs": [{"name": "pair"}],
    }
    r = api.post(URL, json=body)
    assert r.status_code == 200, r.text
    (out,) = r.json()["outputs"]
    assert out["name"] == "pair" and out["datatype"] == "FP32" and out["shape"] == [3, 2]
    assert r.json()["id"] == "r1"
    np.testing.assert_allclose(np.reshape(out["data"], (3, 2)), expected()["pair"], rtol=1e-6)


def v2(features=None, ids=None, **over):
    f = {"name": "features", "datatype": "FP32", "shape": [1, 3], "data": [1.0, 2.0, 3.0], **(features or {})}
    i = {"name": "ids", "datatype": "INT64", "shape": [1, 1], "data": [4], **(ids or {})}
    return {"inputs": [f, i], **over}


@pytest.mark.parametrize(
    "body, status, fragment",
    [
        (v2(ids={"datatype": "FP32", "data": [4.0]}), 400, "input 'ids': datatype FP32 does not map exactly"),
        (
            v2(features={"datatype": "BOOL", "data": [True, False, True]}),
            400,
            "input 'features': datatype BOOL",
        ),
        # a floating input takes any real datatype, rounded (one rule for every model, issue 23)
        (v2(features={"datatype": "INT64", "data": [1, 2, 3]}), 200, ""),
        (v2(ids={"datatype": "BOOL", "data": [True]}), 400, "input 'ids': datatype BOOL"),
        (v2(ids={"datatype": "INT8", "data": [300]}), 400, "input 'ids': value 300 is outside INT8's range"),
        (v2(features={"datatype": "FP16", "data": [1e6, 0, 0]}), 400, "input 'features'"),
        (v2(ids={"data": [1.5]}), 400, "input 'ids': 'data' [1.5] holds values that are not integers"),
        (v2(ids={"shape": [2, 1], "data": [1, 2]}), 400, "every input needs the same number of rows"),
        (v2(features={"shape": [1, 4]}), 400, "input 'features': shape [1, 4]; expected [rows, 3]"),
        (v2(ids={"shape": [9, 1], "data": [1] * 9}), 413, "input 'ids': 9 rows exceed the limit of 8"),
        (v2(ids={"name": "x"}), 400, "the model's inputs are ['features', 'ids']"),
        (v2(outputs=[{"name": "y"}]), 400, "unknown output 'y'; the model's outputs are ['pair', 'score']"),
        (v2(outputs=[{"name": "pair"}, {"name": "pair"}]), 400, "output 'pair' is requested twice"),
        (v2(features={"data": [1e38, 1e38, 1e38]}), 400, "overflows float32"),
        # the common plain request's fast decoding (serve/engine/tensors.py) refuses as the general path
        (v2(features={"shape": [True, 3]}), 400, "input 'features': shape [True, 3]"),
        (v2(features={"shape": [1, True, 3]}), 400, "input 'features': shape [1, True, 3]"),
        (v2(features={"data": [1e39, 0.0, 0.0]}), 400, "input contains NaN or infinity"),
        (v2(ids={"data": [2**63]}), 400, "input 'ids'"),
        (v2(ids={"data": [[4]]}), 200, ""),  # nested data is fine on the general path
        (v2(ids={"name": ["ids"]}), 400, "the model's inputs are ['features', 'ids']"),
        ({"inputs": v2()["inputs"][:1] * 2}, 400, "the model's inputs are ['features', 'ids']"),
        (v2(features={"data": [1.0, 2.0]}), 400, "input 'features': shape [1, 3] needs 3 values"),
    ],
)
def test_refusals_name_the_tensor(api, body, status, fragment):
    r = api.post(URL, json=body)
    assert r.status_code == status and fragment in r.json().get("error", ""), r.text
    assert api.get("/v2/health/ready").status_code == 200


def test_tfserving_columnar_and_row_formats(api):
    columnar = {"inputs": {"features": FEATURES.tolist(), "ids": IDS.tolist()}}
    r = api.post(f"/v1/models/{NAME}:predict", json=columnar)
    assert r.status_code == 200, r.text
    outputs = r.json()["outputs"]
    assert sorted(outputs) == ["pair", "score"]
    for name, value in expected().items():
        np.testing.assert_allclose(outputs[name], value, rtol=1e-6)
    rows = {
        "instances": [{"features": f, "ids": i} for f, i in zip(FEATURES.tolist(), IDS.tolist(), strict=True)]
    }
    predictions = api.post(f"/v1/models/{NAME}:predict", json=rows).json()["predictions"]
    np.testing.assert_allclose([p["pair"] for p in predictions], expected()["pair"], rtol=1e-6)
    np.testing.assert_allclose([p["score"] for p in predictions], expected()["score"], rtol=1e-6)
    bad = {"inputs": {"features": FEATURES.tolist(), "ids": [[0.5], [1.0], [2.0]]}}
    r = api.post(f"/v1/models/{NAME}:predict", json=bad)
    assert r.status_code == 400 and "input 'ids'" in r.json()["error"]
    r = api.post(f"/v1/models/{NAME}:predict", json={"inputs": {"features": FEATURES.tolist()}})
    assert r.status_code == 400 and "exactly the keys ['features', 'ids']" in r.json()["error"]


@pytest.mark.slow
def test_grpc_raw_and_typed_contents(artifacts):
    from bench._server import free_port, start_server, stop_server

    grpc_port = free_port()
    proc, _ = start_server(artifacts, "--grpc-port", str(grpc_port))
    try:
        c = grpcclient.InferenceServerClient(f"127.0.0.1:{grpc_port}")
        meta = c.get_model_metadata(NAME)
        assert [(t.name, t.datatype, list(t.shape)) for t in meta.inputs] == [
            ("features", "FP32", [-1, 3]),
            ("ids", "INT64", [-1, 1]),
        ]
        a = grpcclient.InferInput("features", list(FEATURES.shape), "FP32")
        a.set_data_from_numpy(FEATURES)
        b = grpcclient.InferInput("ids", list(IDS.shape), "INT32")  # narrower: maps exactly onto int64
        b.set_data_from_numpy(IDS.astype(np.int32))
        result = c.infer(NAME, [a, b])
        for name, value in expected().items():
            np.testing.assert_allclose(result.as_numpy(name), value, rtol=1e-6)
        only = c.infer(NAME, [a, b], outputs=[grpcclient.InferRequestedOutput("score")])
        assert [o.name for o in only.get_response().outputs] == ["score"]
        with pytest.raises(InferenceServerException, match="datatype FP32 does not map exactly"):
            bad = grpcclient.InferInput("ids", list(IDS.shape), "FP32")
            bad.set_data_from_numpy(IDS.astype(np.float32))
            c.infer(NAME, [a, bad])
        # typed contents, built by hand (tritonclient always sends raw)
        from tritonclient.grpc import service_pb2 as pb

        request = pb.ModelInferRequest(model_name=NAME)
        t = request.inputs.add(name="features", datatype="FP32", shape=[3, 3])
        t.contents.fp32_contents.extend(FEATURES.ravel().tolist())
        t = request.inputs.add(name="ids", datatype="INT64", shape=[3, 1])
        t.contents.int64_contents.extend(IDS.ravel().tolist())
        response = c._client_stub.ModelInfer(request)
        out = {o.name: i for i, o in enumerate(response.outputs)}
        pair = np.frombuffer(response.raw_output_contents[out["pair"]], dtype="<f4").reshape(3, 2)
        np.testing.assert_allclose(pair, expected()["pair"], rtol=1e-6)
        c.close()
    finally:
        stop_server(proc)


def test_json_bodies_are_refused_not_crashed(api):
    for body in (
        {"inputs": [{"name": "features"}, 5]},
        {"inputs": [{"name": 5}, {"name": "ids"}]},
        {"inputs": v2()["inputs"], "outputs": [5]},
        {"inputs": v2()["inputs"], "outputs": "score"},
    ):
        r = api.post(URL, content=json.dumps(body).encode())
        assert r.status_code == 400, (body, r.text)
