"""Protocol hardening of a real `python -m serve` over raw sockets (issue 12, section 4): the header
timeout, Content-Length with Transfer-Encoding, the JSON nesting limit, short previews of client
input in error bodies, and a 1M-row binary request under the default limits."""

from __future__ import annotations

import http.client
import json
import re
import socket
import time

import numpy as np
import pytest

from bench._server import start_server, stop_server
from tests.serve_app import assert_no_leak, reference
from tests.test_server_process_hardening import VALID, infer_ok, read_all

pytestmark = pytest.mark.slow

HEADER_TIMEOUT = 1.0
ROUTE = "/v2/models/keras_linear/infer"


@pytest.fixture(scope="module")
def server(exported_dir):
    proc, port = start_server(exported_dir, "--header-timeout", str(HEADER_TIMEOUT))
    yield proc, port
    stop_server(proc)


def exchange(port: int, data: bytes, limit: float = 10) -> tuple[bytes, float]:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(data)
    try:
        return read_all(sock, limit)
    finally:
        sock.close()


@pytest.mark.parametrize("order", ["cl-first", "te-first"])
def test_content_length_with_transfer_encoding_is_400_and_closes(server, exported_dir, order):
    _, port = server
    framing = [f"Content-Length: {len(VALID)}", "Transfer-Encoding: chunked"]
    if order == "te-first":
        framing.reverse()
    head = f"POST {ROUTE} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n" + "\r\n".join(framing)
    chunked = f"{len(VALID):x}\r\n".encode() + VALID + b"\r\n0\r\n\r\n"
    smuggled = b"GET /v2/health/live HTTP/1.1\r\nHost: t\r\n\r\n"
    data, _ = exchange(port, head.encode() + b"\r\n\r\n" + chunked + smuggled)
    assert len(re.findall(rb"HTTP/1\.1 \d{3} ", data)) == 1, (
        data
    )  # one answer: the request behind it is never read
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 "), data
    assert b"connection: close" in head.lower()
    assert "RFC 9112" in json.loads(body)["error"]
    infer_ok(port, exported_dir)


def test_stalled_headers_are_closed_and_valid_requests_still_served(server, exported_dir):
    _, port = server
    stalled = []
    for i in range(200):  # half send part of a request head, half send nothing at all
        sock = socket.create_connection(("127.0.0.1", port))
        if i % 2 == 0:
            sock.sendall(f"POST {ROUTE} HTTP/1.1\r\nHost: t\r\nX-Slow: ".encode())
        stalled.append(sock)
    start = time.monotonic()
    for _ in range(5):  # served while all 200 stall
        infer_ok(port, exported_dir)
    assert time.monotonic() - start < HEADER_TIMEOUT + 5
    for i, sock in enumerate(stalled):
        data, _ = read_all(sock, limit=HEADER_TIMEOUT + 10)  # recv returns b"" once the server closes
        sock.close()
        if i % 2 == 0:
            head, _, body = data.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 408 "), data
            assert "--header-timeout" in json.loads(body)["error"]
        else:
            assert data == b""
    assert time.monotonic() - start < HEADER_TIMEOUT + 15  # all closed, bounded (a shared 2-core machine)
    infer_ok(port, exported_dir)


def test_kept_alive_connection_gets_the_timeout_again_for_its_next_request(server, exported_dir):
    _, port = server
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(
        f"POST {ROUTE} HTTP/1.1\r\nHost: t\r\nContent-Length: {len(VALID)}\r\n\r\n".encode()
        + VALID
        + b"GET /v2/health/live HTTP/1.1\r\nHo"  # the next request's head stalls
    )
    data, seconds = read_all(sock, limit=HEADER_TIMEOUT + 10)
    sock.close()
    assert data.startswith(b"HTTP/1.1 200 ") and b"HTTP/1.1 408 " in data, data
    assert seconds < HEADER_TIMEOUT + 5


def long_name_body() -> bytes:
    return json.dumps({"inputs": [{"name": "A" * 100_000, "shape": [1, 1], "datatype": "FP32", "data": [1]}]})


@pytest.mark.parametrize(
    "route, body",
    [
        (ROUTE, long_name_body().encode()),
        (ROUTE, json.dumps({"inputs": [{"name": "x", "shape": [1, 1], "datatype": "X" * 100_000}]}).encode()),
        ("/v1/models/keras_linear:predict", json.dumps({"instances": [["x" * 100_000]]}).encode()),
        ("/v2/models/" + "m" * 20_000 + "/infer", VALID),
    ],
)
def test_error_bodies_echo_only_a_short_preview(server, exported_dir, route, body):
    _, port = server
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("POST", route, body=body, headers={"Content-Type": "application/json"})
    r = conn.getresponse()
    text = r.read().decode()
    conn.close()
    assert r.status in (400, 404), text
    assert len(text) < 600 and "A" * 100 not in text and "x" * 100 not in text and "m" * 100 not in text
    assert_no_leak(text, exported_dir)


def test_deep_json_is_400_without_a_traceback_in_the_log(exported_dir):
    proc, port = start_server(exported_dir)
    try:
        cases = [
            (ROUTE, b'{"inputs":' + b"[" * 100_000 + b"]" * 100_000 + b"}", "deeper than 1024"),
            (ROUTE, b'{"inputs":[' + b"[" * 1000 + b"]" * 1000 + b"]}", "input tensor"),
            ("/v1/models/keras_linear:predict", b'{"instances":' + b"[" * 1000 + b"]" * 1000 + b"}", "got"),
            ("/v1/models/keras_linear:predict", b'{"x":' + b'{"a":' * 5000 + b"1" + b"}" * 5001, "deeper"),
        ]
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        for route, body, expected in cases * 3:  # repeated: no per-request traceback either
            conn.request("POST", route, body=body, headers={"Content-Type": "application/json"})
            r = conn.getresponse()
            error = json.loads(r.read())["error"]
            assert r.status == 400 and expected in error, (r.status, error)
            assert len(error) < 400
        conn.close()
        infer_ok(port, exported_dir)
    finally:
        stop_server(proc)
    log = proc.stderr.read()
    assert "Traceback" not in log and "RecursionError" not in log, log[-2000:]


def test_a_million_row_binary_request_works_with_the_default_limits(server, exported_dir):
    _, port = server
    x = (np.arange(1_000_000, dtype=np.float32) / 1e5).reshape(-1, 1)
    head = json.dumps(
        {
            "inputs": [
                {
                    "name": "x",
                    "shape": list(x.shape),
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": x.nbytes},
                }
            ],
            "parameters": {"binary_data_output": True},
        }
    ).encode()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    headers = {"Inference-Header-Content-Length": str(len(head)), "Content-Type": "application/octet-stream"}
    conn.request("POST", ROUTE, body=head + x.tobytes(), headers=headers)
    r = conn.getresponse()
    data = r.read()
    conn.close()
    assert r.status == 200, data[:300]
    n = int(r.getheader("Inference-Header-Content-Length"))
    assert json.loads(data[:n])["outputs"][0]["shape"] == [1_000_000, 1]
    y = np.frombuffer(data[n:], dtype="<f4").reshape(-1, 1)
    np.testing.assert_array_equal(y, reference(exported_dir, "keras_linear", x))
