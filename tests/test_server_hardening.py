"""Server bad input and security defaults, in-process: every refusal is the right 4xx with
`{"error": ...}` and the server then still answers a valid request correctly; model names in
URLs never reach the filesystem; only ONNX files are ever opened.

(tests/test_v2.py and test_tfserving.py check each error's message; this file checks the
categories of issue 6 end to end, each followed by a valid request.)
"""

from __future__ import annotations

import asyncio
import json
import sys
from urllib.parse import unquote

import numpy as np
import pytest

from serve.engine.registry import Registry
from serve.http.config import ServeConfig
from tests.serve_app import MODELS, assert_no_leak, client, reference

V2, V1 = "/v2/models/keras_linear/infer", "/v1/models/keras_linear:predict"


def t(**kw):
    return {"inputs": [{"name": "x", "shape": [1, 1], "datatype": "FP32", "data": [1.0], **kw}]}


def drop(key):
    tensor = t()["inputs"][0]
    del tensor[key]
    return {"inputs": [tensor]}


def bin_body(size, payload, header_length=None):
    head = json.dumps(
        {
            "inputs": [
                {"name": "x", "shape": [1, 1], "datatype": "FP32", "parameters": {"binary_data_size": size}}
            ]
        }
    ).encode()
    return head + payload, {
        "Inference-Header-Content-Length": str(len(head) if header_length is None else header_length)
    }


def raw(text):
    return text.encode(), {}


def js(obj):
    return json.dumps(obj).encode(), {}


# (route, (body, headers), status): one or more per category of issue 6, section 1.
BAD = {
    "malformed_json_v2": (V2, raw('{"inputs": [{"name": "x"'), 400),
    "malformed_json_v1": (V1, raw('{"instances": [1,'), 400),
    "empty_body": (V2, raw(""), 400),
    "not_utf8": (V2, (b'{"inputs": "\xff\xfe"}', {}), 400),
    "inputs_is_object": (V2, js({"inputs": {"name": "x"}}), 400),
    "shape_is_string": (V2, js(t(shape="1,1")), 400),
    "data_is_string": (V2, js(t(data="1.0")), 400),
    "data_is_object": (V2, js(t(data={"0": 1.0})), 400),
    "datatype_is_number": (V2, js(t(datatype=32)), 400),
    "instances_is_string": (V1, js({"instances": "1.0"}), 400),
    "inputs_is_number": (V1, js({"inputs": 1.0}), 400),
    "shape_data_mismatch": (V2, js(t(shape=[2, 1])), 400),
    "shape_data_mismatch_nested": (V2, js(t(shape=[1, 1], data=[[1.0], [2.0]])), 400),
    "negative_rows": (V2, js(t(shape=[-1, 1])), 400),
    "negative_width": (V2, js(t(shape=[1, -1])), 400),
    "huge_rows": (V2, js(t(shape=[10**30, 1])), 413),
    "huge_rows_int64": (V2, js(t(shape=[2**63 - 1, 1])), 413),
    "huge_width": (V2, js(t(shape=[1, 10**30])), 400),
    "float_dims": (V2, js(t(shape=[1.0, 1])), 400),
    "unknown_datatype": (V2, js(t(datatype="FP128")), 400),
    "nan_v2": (V2, raw('{"inputs":[{"name":"x","shape":[1,1],"datatype":"FP32","data":[NaN]}]}'), 400),
    "infinity_v2": (
        V2,
        raw('{"inputs":[{"name":"x","shape":[2,1],"datatype":"FP64","data":[1,Infinity]}]}'),
        400,
    ),
    "minus_infinity_v1": (V1, raw('{"instances": [[-Infinity]]}'), 400),
    "nan_v1_columnar": (V1, raw('{"inputs": [NaN]}'), 400),
    "missing_inputs": (V2, js({"id": "1"}), 400),
    "missing_name": (V2, js(drop("name")), 400),
    "missing_shape": (V2, js(drop("shape")), 400),
    "missing_datatype": (V2, js(drop("datatype")), 400),
    "missing_data": (V2, js(drop("data")), 400),
    "missing_instances": (V1, js({"signature_name": "serving_default"}), 400),
    "duplicate_inputs": (V2, js({"inputs": t()["inputs"] * 2}), 400),
    "unknown_key_in_instance": (V1, raw('{"instances": [{"x": [1.0], "x2": [2.0]}]}'), 400),
    "binary_size_too_big": (V2, bin_body(8, b"\0\0\x80?"), 400),
    "binary_size_too_small": (V2, bin_body(2, b"\0\0\x80?"), 400),
    "binary_header_beyond_body": (V2, bin_body(4, b"\0\0\x80?", header_length=10**9), 400),
    "binary_header_negative": (V2, bin_body(4, b"\0\0\x80?", header_length=-5), 400),
    "body_over_limit_v2": (V2, raw(" " * 5000), 413),
    "body_over_limit_v1": (V1, raw(" " * 5000), 413),
}


@pytest.fixture(scope="module")
def api(exported_dir):
    return client(exported_dir, max_rows=8, max_body_bytes=4096)


def assert_still_serving(api, exported_dir):
    x = [10.0, -1.0, 2.5]
    r = api.post(V2, json={"inputs": [{"name": "x", "shape": [3, 1], "datatype": "FP32", "data": x}]})
    assert r.status_code == 200, r.text
    np.testing.assert_allclose(
        r.json()["outputs"][0]["data"], reference(exported_dir, "keras_linear", x).ravel(), atol=1e-6, rtol=0
    )
    r = api.post("/v1/models/torch_linear:predict", json={"instances": [[v] for v in x]})
    assert r.status_code == 200, r.text
    np.testing.assert_allclose(
        r.json()["predictions"], reference(exported_dir, "torch_linear", x), atol=1e-6, rtol=0
    )


@pytest.mark.parametrize("case", list(BAD))
def test_bad_request_is_4xx_json_error_then_valid_request_works(api, exported_dir, case):
    route, (body, headers), status = BAD[case]
    r = api.post(route, content=body, headers=headers)
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    error = r.json()
    assert list(error) == ["error"] and isinstance(error["error"], str) and error["error"]
    assert_still_serving(api, exported_dir)


# --- security: model names in URLs ---------------------------------------------------------------

TRAVERSALS = [
    "..%2F..%2Fetc%2Fpasswd",
    "../../etc/passwd",
    "..%252F..%252Fetc%252Fpasswd",
    "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "..%5C..%5Cetc%5Cpasswd",
    "....%2F%2F....%2F%2Fetc%2Fpasswd",
    "%2Fetc%2Fpasswd",
    "keras_linear%2F..%2F..%2Fmanifest.json",
    "keras_linear.onnx",
    "manifest.json",
    "keras_linear.savedmodel",
    "torch_linear.torchscript.pt",
    "..",
    "%00keras_linear",
]
MODEL_ROUTES = [
    ("GET", "/v2/models/{}"),
    ("GET", "/v2/models/{}/ready"),
    ("POST", "/v2/models/{}/infer"),
    ("GET", "/v2/models/{}/versions/1"),
    ("GET", "/v2/models/{}/versions/1/ready"),
    ("POST", "/v2/models/{}/versions/1/infer"),
    ("POST", "/v1/models/{}:predict"),
    ("GET", "/v1/models/{}"),
    ("GET", "/v1/models/{}/metadata"),
    ("POST", "/v1/models/{}/versions/1:predict"),
    ("GET", "/v1/models/{}/versions/1"),
    ("GET", "/v1/models/{}/versions/1/metadata"),
]


class FileWatch:
    """Records every file the process opens or lists while `active` (a sys.audit hook; hooks
    cannot be removed, so it stays installed and idle)."""

    events: list[tuple[str, str]] = []
    active = False
    installed = False

    @classmethod
    def install(cls):
        if not cls.installed:

            def hook(event, args):
                if cls.active and event in ("open", "os.listdir", "os.scandir", "os.stat"):
                    cls.events.append((event, str(args[0]) if args else ""))

            sys.addaudithook(hook)
            cls.installed = True


async def asgi_call(app, method: str, raw_path: bytes, body: bytes = b"") -> tuple[int, bytes]:
    """One request straight into the ASGI app, with the raw (undecoded) path as uvicorn passes it:
    `path` percent-decoded, `raw_path` as sent. No client-side URL normalisation."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": unquote(raw_path.decode("latin-1")),
        "raw_path": raw_path,
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"test"),
            (b"content-length", str(len(body)).encode()),
            (b"content-type", b"application/json"),
        ],
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 50000),
    }
    sent, messages = False, []

    async def receive():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.sleep(3600)

    async def send(message):
        messages.append(message)

    await app(scope, receive, send)
    status = next(m["status"] for m in messages if m["type"] == "http.response.start")
    return status, b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")


@pytest.mark.parametrize("method, route", MODEL_ROUTES)
def test_model_names_are_looked_up_never_joined_into_a_path(api, exported_dir, method, route):
    FileWatch.install()
    body = (
        json.dumps(
            {
                "inputs": [{"name": "x", "shape": [1, 1], "datatype": "FP32", "data": [1.0]}],
                "instances": [[1.0]],
            }
        ).encode()
        if method == "POST"
        else b""
    )
    loop = asyncio.new_event_loop()
    try:
        for name in TRAVERSALS:
            FileWatch.events.clear()
            FileWatch.active = True
            try:
                status, content = loop.run_until_complete(
                    asgi_call(api.app, method, route.format(name).encode(), body)
                )
            finally:
                FileWatch.active = False
            assert status == 404, (name, content)
            assert "error" in json.loads(content)
            assert_no_leak(content.decode(), exported_dir)
            assert "root:" not in content.decode()
            assert FileWatch.events == [], (name, FileWatch.events)
    finally:
        loop.close()


def test_registry_opens_only_the_manifest_and_onnx_files(exported_dir):
    FileWatch.install()
    FileWatch.events.clear()
    FileWatch.active = True
    try:
        registry = Registry(exported_dir)
        assert registry.load_all()
    finally:
        FileWatch.active = False
    opened = {p for event, p in FileWatch.events if event == "open" and str(exported_dir) in p}
    assert opened, "the audit hook saw nothing"
    assert all(p.endswith((".onnx", "manifest.json")) for p in opened), opened
    assert not any(
        ".savedmodel" in p or ".torchscript" in p or p.endswith(".pt") for _, p in FileWatch.events
    )


def test_code_bearing_entries_are_never_served(exported_copy):
    """A manifest whose only entry for a model is a SavedModel or TorchScript: not served (404)."""
    path = exported_copy / "manifest.json"
    manifest = json.loads(path.read_text())
    for e in manifest["artifacts"]:
        if e["format"] == "savedmodel":
            e["model"] = "saved_only"
        elif e["format"] == "torchscript":
            e["model"] = "script_only"
    path.write_text(json.dumps(manifest))
    api = client(exported_copy)
    assert sorted(api.app.state.registry.names) == MODELS
    for name in ("saved_only", "script_only"):
        assert api.get(f"/v2/models/{name}").status_code == 404
        assert api.post(f"/v1/models/{name}:predict", json={"instances": [[1.0]]}).status_code == 404


def test_server_defaults_are_loopback_and_bounded():
    d = ServeConfig()
    assert d.host == "127.0.0.1" and d.max_body_bytes == 4 << 20 and 0 < d.body_timeout <= 60
