"""The protocol defects of issue 23, each refused the way a client can act on: version labels are
ASCII digits only, an unloaded model's versions answer 503, an escaped lone surrogate is a 400,
values outside their declared datatype are refused (HTTP JSON and gRPC typed contents), a
malformed protobuf is INVALID_ARGUMENT with one log line, and gRPC connections that hold no call
are closed (and bounded in number)."""

from __future__ import annotations

import json
import socket
import time

import grpc
import numpy as np
import pytest
from tritonclient.grpc import service_pb2 as pb

from bench._server import free_port, start_server, stop_server
from tests.serve_app import client

ROUTES = [  # every route that takes a version label, with its method
    ("GET", "/v2/models/keras_linear/versions/{v}"),
    ("GET", "/v2/models/keras_linear/versions/{v}/ready"),
    ("POST", "/v2/models/keras_linear/versions/{v}/infer"),
    ("GET", "/v2/models/keras_linear/versions/{v}/stats"),
    ("GET", "/v1/models/keras_linear/versions/{v}"),
    ("GET", "/v1/models/keras_linear/versions/{v}/metadata"),
    ("POST", "/v1/models/keras_linear/versions/{v}:predict"),
]
INFER = {"inputs": [{"name": "x", "shape": [1, 1], "datatype": "FP32", "data": [1.0]}]}
PREDICT = {"instances": [[1.0]]}


def _call(api, method: str, path: str):
    if method == "GET":
        return api.get(path)
    body = PREDICT if path.endswith(":predict") else INFER
    return api.post(path, content=json.dumps(body), headers={"content-type": "application/json"})


@pytest.fixture(scope="module")
def api(exported_dir):
    return client(exported_dir)


@pytest.mark.parametrize("label", ["²", "①", "01", "١", "１", "1_0", " 1", "+1", "0"])
def test_version_labels_are_ascii_digits_only(api, label):
    """'²' and '①' were a 500 on every route; '01', '١' and '１' were taken as version 1."""
    for method, route in ROUTES:
        r = _call(api, method, route.format(v=label))
        assert r.status_code == 404, (route, label, r.status_code, r.text[:200])
    for method, route in ROUTES:  # the real label still answers
        assert _call(api, method, route.format(v="1")).status_code == 200, route


def test_an_unloaded_models_versions_answer_503(exported_dir):
    api = client(exported_dir, model_control="explicit")
    assert api.post("/v2/repository/models/keras_linear/unload").status_code == 200
    for method, route in ROUTES:
        r = _call(api, method, route.format(v="1"))
        assert r.status_code == 503, (route, r.status_code, r.text[:200])
        assert "unloaded" in r.json()["error"]
    assert _call(api, "GET", ROUTES[0][1].format(v="7")).status_code == 503  # no version is served
    assert api.post("/v2/repository/models/keras_linear/load").status_code == 200
    assert _call(api, "POST", ROUTES[2][1].format(v="1")).status_code == 200


def test_an_escaped_lone_surrogate_is_a_400(api):
    body = b'{"id": "\\ud800", "inputs": [{"name": "x", "shape": [1, 1], "datatype": "FP32", "data": [1.0]}]}'
    for path in ("/v2/models/keras_linear/infer", "/v2/models/torch_linear/infer"):
        r = api.post(path, content=body, headers={"content-type": "application/json"})
        assert r.status_code == 400, r.text
        assert "lone surrogate" in r.json()["error"]
    pair = body.replace(b"\\ud800", b"\\ud83d\\ude00")  # a valid pair is fine, and echoed
    r = api.post("/v2/models/keras_linear/infer", content=pair, headers={"content-type": "application/json"})
    assert r.status_code == 200 and r.json()["id"] == "\U0001f600"


@pytest.mark.parametrize(
    "datatype, data, fragment",
    [
        ("INT8", [300], "outside INT8's range"),
        ("INT8", [-129], "outside INT8's range"),
        ("UINT8", [-1], "outside UINT8's range"),
        ("UINT16", [70000], "outside UINT16's range"),
        ("FP16", [1e6], "outside FP16's range"),
        ("FP32", [1.0, True], "not numbers"),
        ("FP32", [[True], [2.0]], "not numbers"),
    ],
)
def test_values_outside_their_datatype_are_refused(api, datatype, data, fragment):
    shape = [len(data), 1]
    body = {"inputs": [{"name": "x", "shape": shape, "datatype": datatype, "data": data}]}
    r = api.post("/v2/models/keras_linear/infer", json=body)
    assert r.status_code == 400, (datatype, data, r.text)
    assert fragment in r.json()["error"]


@pytest.mark.parametrize("datatype, value", [("INT8", 127), ("UINT8", 255), ("FP16", 65504.0), ("INT64", 5)])
def test_values_inside_their_datatype_still_run(api, datatype, value):
    body = {"inputs": [{"name": "x", "shape": [1, 1], "datatype": datatype, "data": [value]}]}
    r = api.post("/v2/models/keras_linear/infer", json=body)
    assert r.status_code == 200, r.text


@pytest.fixture(scope="module")
def grpc_server(exported_dir):
    grpc_port = free_port()
    proc, port = start_server(
        exported_dir,
        "--grpc-port",
        str(grpc_port),
        "--grpc-idle-seconds",
        "1",
        "--header-timeout",
        "1",
        "--grpc-max-connections",
        "16",
    )
    yield proc, grpc_port
    stop_server(proc)


def _unary(port: int, method: str, payload: bytes, timeout: float = 5):
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.unary_unary(f"/inference.GRPCInferenceService/{method}")
        return call(payload, timeout=timeout)


def test_a_malformed_protobuf_is_invalid_argument(grpc_server):
    """grpcio's own deserializer answered UNKNOWN with a traceback in the log per call."""
    _, port = grpc_server
    for garbage in (b"\xff\xff\xff", b"\x0a\x05ab", b"\x12\x80\x80\x80\x80\x10"):
        with pytest.raises(grpc.RpcError) as info:
            _unary(port, "ModelInfer", garbage)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value
        assert "not a valid ModelInferRequest" in info.value.details()
    ok = pb.ServerLiveResponse.FromString(_unary(port, "ServerLive", b""))
    assert ok.live
    with pytest.raises(grpc.RpcError) as info:  # a method the service does not implement
        _unary(port, "TraceSetting", b"")
    assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_grpc_version_labels_and_datatype_ranges(grpc_server):
    _, port = grpc_server

    def infer(version: str, datatype: str, contents: pb.InferTensorContents):
        request = pb.ModelInferRequest(
            model_name="keras_linear",
            model_version=version,
            inputs=[
                pb.ModelInferRequest.InferInputTensor(
                    name="x", datatype=datatype, shape=[1, 1], contents=contents
                )
            ],
        )
        return _unary(port, "ModelInfer", request.SerializeToString())

    for label in ("²", "01", "１"):
        with pytest.raises(grpc.RpcError) as info:
            infer(label, "FP32", pb.InferTensorContents(fp32_contents=[1.0]))
        assert info.value.code() == grpc.StatusCode.NOT_FOUND, (label, info.value)
    for datatype, contents in [
        ("INT8", pb.InferTensorContents(int_contents=[300])),
        ("UINT8", pb.InferTensorContents(uint_contents=[256])),
        ("INT16", pb.InferTensorContents(int_contents=[-40000])),
    ]:
        with pytest.raises(grpc.RpcError) as info:
            infer("1", datatype, contents)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (datatype, info.value)
        assert "range" in info.value.details()
    answer = pb.ModelInferResponse.FromString(infer("1", "INT8", pb.InferTensorContents(int_contents=[10])))
    assert np.frombuffer(answer.raw_output_contents[0], "<f4").shape == (1,)


def test_grpc_connections_holding_no_call_are_closed(grpc_server):
    """Connections that send the HTTP/2 preface and then nothing were kept forever (1,100 of them
    exhausted the file limit); now they are closed after --grpc-idle-seconds / --header-timeout."""
    _, port = grpc_server
    preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
    socks = []
    for _ in range(8):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(preface)
        socks.append(s)
    deadline = time.monotonic() + 10
    closed = 0
    for s in socks:
        s.settimeout(max(0.1, deadline - time.monotonic()))
        try:
            while s.recv(65536):  # the server's SETTINGS / GOAWAY frames, then EOF
                pass
            closed += 1
        except ConnectionResetError:
            closed += 1
        except TimeoutError:
            pass  # still open
        finally:
            s.close()
    assert closed == len(socks), f"{len(socks) - closed} idle connections still open after 10 s"
    assert pb.ServerLiveResponse.FromString(_unary(port, "ServerLive", b"")).live  # still serving


def _rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def _send_head(port: int, header_bytes: int) -> bytes:
    """A GET whose headers total about `header_bytes`, sent in 64 KiB pieces; the answer's bytes
    (the server may close before all was sent)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"GET /v2/health/live HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n")
        line = b"x-pad: " + b"a" * 1000 + b"\r\n"
        sent = 0
        try:
            while sent < header_bytes:
                s.sendall(line * 64)
                sent += len(line) * 64
            s.sendall(b"\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer = b""
        try:
            while chunk := s.recv(65536):
                answer += chunk
                if b"\r\n\r\n" in answer and b"close" in answer.lower():
                    break
        except ConnectionResetError:
            pass
        return answer


def test_request_heads_beyond_the_limit_get_431(exported_dir):
    """64 MiB of headers got a 200 and four such requests left the server 260 MB larger."""
    proc, port = start_server(exported_dir, "--max-header-bytes", "65536")
    try:
        assert _send_head(port, 30_000).startswith(b"HTTP/1.1 200")
        before = _rss_mib(proc.pid)
        for _ in range(4):
            answer = _send_head(port, 64 << 20)
            assert answer.startswith(b"HTTP/1.1 431"), answer[:200]
            assert b"--max-header-bytes" in answer
        assert _rss_mib(proc.pid) - before < 40, (before, _rss_mib(proc.pid))
        assert _send_head(port, 30_000).startswith(b"HTTP/1.1 200")  # still serving
    finally:
        stop_server(proc)
