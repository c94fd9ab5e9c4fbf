"""V2 infer in-process: JSON tensors, Triton's binary tensor data extension, and every 400/413."""

import json

import numpy as np
import pytest
import tritonclient.http as httpclient

from tests.serve_app import MODELS, client, reference

URL = "/v2/models/{}/infer"


@pytest.fixture(scope="module")
def api(exported_dir):
    return client(exported_dir, max_rows=8, max_body_bytes=4096)


def tensor(data, shape, datatype="FP32", **extra):
    return {"name": "x", "shape": shape, "datatype": datatype, "data": data, **extra}


def infer(api, body, name="keras_linear", **kwargs):
    return api.post(
        URL.format(name), content=json.dumps(body).encode() if body is not None else None, **kwargs
    )


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("data, shape", [([10.0], [1, 1]), ([1, 2, 3], [3, 1]), ([[1], [2], [3]], [3, 1])])
def test_json_infer_matches_loader(api, exported_dir, name, data, shape):
    r = infer(api, {"id": "req-7", "inputs": [tensor(data, shape)]}, name)
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    body = r.json()
    assert body["model_name"] == name and body["model_version"] == "1" and body["id"] == "req-7"
    (out,) = body["outputs"]
    assert out["name"] == "y" and out["datatype"] == "FP32" and out["shape"] == [shape[0], 1]
    np.testing.assert_allclose(out["data"], reference(exported_dir, name, data).ravel(), atol=1e-6, rtol=0)


@pytest.mark.parametrize(
    "datatype, data",
    [
        ("FP64", [10.0, -2.5]),
        ("INT32", [10, -2]),
        ("INT64", [10, 3]),
        ("UINT8", [10, 200]),
        ("FP16", [10.0, 0.5]),
    ],
)
def test_datatypes_convert_to_fp32(api, exported_dir, datatype, data):
    r = infer(api, {"inputs": [tensor(data, [2, 1], datatype)]}, "torch_linear")
    assert r.status_code == 200, r.text
    np.testing.assert_allclose(
        r.json()["outputs"][0]["data"], reference(exported_dir, "torch_linear", data).ravel(), atol=1e-6
    )


def test_versioned_route_and_outputs_honoured(api):
    body = {
        "inputs": [tensor([10], [1, 1])],
        "outputs": [{"name": "y", "parameters": {"binary_data": False}}],
    }
    r = api.post("/v2/models/keras_linear/versions/1/infer", json=body)
    assert r.status_code == 200 and r.json()["outputs"][0]["data"]
    body["outputs"] = [{"name": "z"}]
    r = api.post("/v2/models/keras_linear/infer", json=body)
    assert r.status_code == 400 and "unknown output 'z'" in r.json()["error"]


@pytest.mark.parametrize("binary_input", [True, False])
@pytest.mark.parametrize("binary_output", [True, False, None])
def test_tritonclient_request_bodies(api, exported_dir, binary_input, binary_output):
    """Bodies built by tritonclient.http itself; the response parsed by its InferResult."""
    x = np.array([[10.0], [0.0], [-3.0]], dtype=np.float32)
    inp = httpclient.InferInput("x", list(x.shape), "FP32")
    inp.set_data_from_numpy(x, binary_data=binary_input)
    outputs = (
        None if binary_output is None else [httpclient.InferRequestedOutput("y", binary_data=binary_output)]
    )
    body, json_size = httpclient.InferenceServerClient.generate_request_body(
        [inp], outputs=outputs, request_id="9"
    )
    headers = {} if json_size is None else {"Inference-Header-Content-Length": str(json_size)}
    r = api.post(
        URL.format("torch_linear"), content=body, headers=headers
    )  # no Content-Type, like tritonclient
    assert r.status_code == 200, r.text
    header_length = r.headers.get("inference-header-content-length")
    assert (header_length is not None) == (binary_output is not False)
    result = httpclient.InferResult.from_response_body(
        r.content, header_length=header_length and int(header_length)
    )
    assert result.get_response()["id"] == "9"
    np.testing.assert_allclose(
        result.as_numpy("y"), reference(exported_dir, "torch_linear", x), atol=1e-6, rtol=0
    )


def test_binary_little_endian_by_hand(api, exported_dir):
    x = np.array([1.5, 2.5], dtype="<f8")
    head = json.dumps(
        {
            "inputs": [
                {"name": "x", "shape": [2, 1], "datatype": "FP64", "parameters": {"binary_data_size": 16}}
            ],
            "parameters": {"binary_data_output": True},
        }
    ).encode()
    r = api.post(
        URL.format("keras_linear"),
        content=head + x.tobytes(),
        headers={"Inference-Header-Content-Length": str(len(head))},
    )
    n = int(r.headers["inference-header-content-length"])
    out = json.loads(r.content[:n])["outputs"][0]
    assert out["parameters"]["binary_data_size"] == 8 and "data" not in out
    y = np.frombuffer(r.content[n:], dtype="<f4")
    np.testing.assert_allclose(y, reference(exported_dir, "keras_linear", x).ravel(), atol=1e-6, rtol=0)


def bin_body(size, payload, header=None, **tensor_extra):
    head = json.dumps(
        {
            "inputs": [
                {
                    "name": "x",
                    "shape": [1, 1],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": size},
                    **tensor_extra,
                }
            ]
        }
    ).encode()
    return head + payload, {"Inference-Header-Content-Length": str(len(head) if header is None else header)}


@pytest.mark.parametrize(
    "body_headers, message",
    [
        (bin_body(4, b"\0\0\x80?", header="abc"), "Inference-Header-Content-Length 'abc'"),
        (bin_body(4, b"\0\0\x80?", header=10**6), "between 0 and the body size"),
        (bin_body(8, b"\0\0\x80?"), "only 4 bytes"),
        (bin_body(4, b"\0\0\x80?\0"), "1 bytes of binary data after the JSON header belong to no input"),
        (bin_body(2, b"\0\0"), "2 bytes of binary data, but 1 FP32 elements take 4"),
        (bin_body(-1, b""), "binary_data_size -1 is not a byte count"),
        (bin_body(4, b"\0\0\x80?", data=[1.0]), "both 'data' and binary_data_size"),
        (bin_body(4, b"\0\0\xc0\x7f"), "NaN or infinity"),
        ((bin_body(4, b"")[0], {}), "only 0 bytes"),  # binary input without the header
    ],
)
def test_binary_errors(api, body_headers, message):
    body, headers = body_headers
    r = api.post(URL.format("keras_linear"), content=body, headers=headers)
    assert r.status_code == 400 and message in r.json()["error"], r.text


@pytest.mark.parametrize(
    "body, message",
    [
        ("not json", "not valid JSON"),
        ([1], "is a JSON list; expected a JSON object"),
        ({}, "'inputs' must be a list of exactly one tensor named 'x'"),
        ({"inputs": [tensor([1], [1, 1])] * 2}, "exactly one tensor"),
        ({"inputs": ["x"]}, "must be a JSON object"),
        ({"id": 5, "inputs": [tensor([1], [1, 1])]}, "'id' must be a string"),
        ({"inputs": [{**tensor([1], [1, 1]), "name": "q"}]}, "unknown input 'q'"),
        ({"inputs": [tensor(["a"], [1, 1], "BYTES")]}, "datatype 'BYTES' is not supported"),
        (
            {"inputs": [tensor([True], [1, 1], "BOOL")]},
            "datatype BOOL does not map exactly onto the model's FP32",
        ),
        ({"inputs": [tensor([1, 2], [1, 1])]}, "shape [1, 1] needs 1 values, 'data' has 2"),
        ({"inputs": [tensor([1, 2], [2, 2])]}, "expected [rows, 1]"),
        ({"inputs": [tensor([1], [1])]}, "expected [rows, 1]"),
        ({"inputs": [tensor([1], [1, "1"])]}, "expected [rows, 1]"),
        ({"inputs": [tensor([], [0, 1])]}, "has no rows"),
        ({"inputs": [tensor(["1.0"], [1, 1])]}, "not numbers"),
        ({"inputs": [tensor([True], [1, 1])]}, "not numbers"),
        ({"inputs": [tensor([1.5], [1, 1], "INT32")]}, "not integers"),
        ({"inputs": [tensor([[1], [2, 3]], [3, 1])]}, "not rectangular"),
        ({"inputs": [tensor(None, [1, 1])]}, "'data' must be a list"),
        ({"inputs": [tensor([1e39], [1, 1])]}, "NaN or infinity"),
        ({"inputs": [tensor([3e38], [1, 1])]}, "overflows float32"),
        ({"inputs": [tensor([1], [1, 1])], "parameters": []}, "'parameters' must be a JSON object"),
        (
            {"inputs": [tensor([1], [1, 1])], "parameters": {"binary_data_output": "yes"}},
            "binary_data_output",
        ),
        ({"inputs": [tensor([1], [1, 1])], "outputs": {"name": "y"}}, "'outputs' must be a list"),
        (
            {
                "inputs": [tensor([1], [1, 1])],
                "outputs": [{"name": "y", "parameters": {"classification": 2}}],
            },
            "classification",
        ),
    ],
)
def test_bad_requests_are_400(api, body, message):
    content = body.encode() if isinstance(body, str) else json.dumps(body).encode()
    r = api.post(URL.format("keras_linear"), content=content)
    assert r.status_code == 400, r.text
    assert message in r.json()["error"]


def test_nan_literal_is_400(api):
    r = api.post(
        URL.format("keras_linear"),
        content=b'{"inputs":[{"name":"x","shape":[1,1],"datatype":"FP32","data":[NaN]}]}',
    )
    assert r.status_code == 400 and "NaN" in r.json()["error"]


def test_limits_are_413(api):
    r = infer(api, {"inputs": [tensor(list(range(9)), [9, 1])]})
    assert r.status_code == 413 and "9 rows exceed the limit of 8" in r.json()["error"]
    r = infer(api, {"inputs": [tensor([1.0] * 2000, [2000, 1])]})
    assert r.status_code == 413 and "exceeds the limit of 4096 bytes" in r.json()["error"]

    def chunked():  # no Content-Length: the limit is enforced while streaming
        yield b'{"inputs": ['
        yield b" " * 5000
        yield b"]}"

    r = api.post(URL.format("keras_linear"), content=chunked())
    assert r.status_code == 413


def test_unknown_model_infer_is_404(api):
    r = infer(api, {"inputs": [tensor([1], [1, 1])]}, name="nope")
    assert r.status_code == 404 and "keras_linear, torch_linear" in r.json()["error"]


@pytest.mark.parametrize(
    "data, datatype, status",
    [
        ([10**400], "FP32", 400),
        ([-(10**400)], "INT64", 400),
        ([[2.5]], "FP64", 200),
        ([7], "INT8", 200),
        ([7.5], "INT8", 400),
    ],
)
def test_batch_one_fast_path_agrees(api, data, datatype, status):
    r = infer(api, {"inputs": [tensor(data, [1, 1], datatype)]})
    assert r.status_code == status, r.text
