"""`python -m serve` as a real process: a stalled body is answered 408 within --body-timeout,
the default bind is loopback, neither TensorFlow nor torch is ever mapped into the process,
traversal names over real HTTP are 404, and the server keeps serving throughout."""

from __future__ import annotations

import http.client
import json
import socket
import time
from pathlib import Path

import numpy as np
import pytest

from bench._server import start_server, stop_server
from tests.serve_app import assert_no_leak, reference
from tests.test_server_hardening import MODEL_ROUTES, TRAVERSALS

pytestmark = pytest.mark.slow

BODY_TIMEOUT = 1.0
VALID = json.dumps({"inputs": [{"name": "x", "shape": [1, 1], "datatype": "FP32", "data": [10.0]}]}).encode()


@pytest.fixture(scope="module")
def server(exported_dir):
    proc, port = start_server(exported_dir, "--body-timeout", str(BODY_TIMEOUT))  # no --host: the default
    yield proc, port
    stop_server(proc)


def infer_ok(port: int, exported_dir: Path) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request(
        "POST", "/v2/models/torch_linear/infer", body=VALID, headers={"Content-Type": "application/json"}
    )
    r = conn.getresponse()
    assert r.status == 200
    y = json.loads(r.read())["outputs"][0]["data"]
    np.testing.assert_allclose(y, reference(exported_dir, "torch_linear", [10.0]).ravel(), atol=1e-6, rtol=0)
    conn.close()


def read_all(sock: socket.socket, limit: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection, and how long that took."""
    sock.settimeout(limit)
    start, data = time.monotonic(), b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return data, time.monotonic() - start
        data += chunk


@pytest.mark.parametrize(
    "route, framing",
    [
        ("/v2/models/keras_linear/infer", "content-length"),
        ("/v1/models/keras_linear:predict", "content-length"),
        ("/v2/models/keras_linear/infer", "chunked"),
    ],
)
def test_stalled_body_is_408_within_the_timeout_and_connection_closed(server, exported_dir, route, framing):
    _, port = server
    others = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]  # stall several at once
    for sock in others:
        head = f"POST {route} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        if framing == "chunked":
            sock.sendall(f"{head}Transfer-Encoding: chunked\r\n\r\n5\r\n".encode() + VALID[:5] + b"\r\n")
        else:
            sock.sendall(f"{head}Content-Length: {len(VALID)}\r\n\r\n".encode() + VALID[:20])
    infer_ok(port, exported_dir)  # served while those stall
    for sock in others:
        data, seconds = read_all(sock, limit=BODY_TIMEOUT + 10)
        sock.close()
        head, _, body = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408 "), data
        assert b"connection: close" in head.lower()
        assert "--body-timeout" in json.loads(body)["error"]
        assert_no_leak(body.decode(), exported_dir)
        assert seconds < BODY_TIMEOUT + 5  # bounded (the bound is generous: a shared 2-core machine)
    infer_ok(port, exported_dir)


def test_binds_loopback_by_default(server):
    _, port = server
    listening = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                listening.append(local.rsplit(":", 1)[0])
    assert listening == ["0100007F"], listening  # 127.0.0.1, little-endian hex; nothing else


def test_never_maps_tensorflow_or_torch(server):
    proc, _ = server
    maps = Path(f"/proc/{proc.pid}/maps").read_text()
    assert "onnxruntime" in maps  # the check sees shared libraries
    for lib in ("libtensorflow", "_pywrap_tensorflow", "libtorch", "libc10", "libtf2onnx"):
        assert lib not in maps, lib


def test_traversal_over_real_http_is_404_and_serving_continues(server, exported_dir):
    _, port = server
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)  # sends the path as given
    for method, route in MODEL_ROUTES:
        for name in TRAVERSALS:
            conn.request(method, route.format(name), body=VALID if method == "POST" else None)
            r = conn.getresponse()
            body = r.read().decode()
            assert r.status == 404, (route, name, body)
            assert "error" in json.loads(body) and "root:" not in body
            assert_no_leak(body, exported_dir)
    conn.close()
    infer_ok(port, exported_dir)
