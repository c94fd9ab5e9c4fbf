"""`python -m serve` as a real process on a free loopback port, driven by tritonclient.http and httpx."""

import os
import signal
import socket
import subprocess
import sys

import httpx
import numpy as np
import pytest
import tritonclient.http as httpclient

from bench._server import start_server, stop_server
from tests.conftest import ROOT
from tests.serve_app import MODELS, reference

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(exported_dir):
    proc, port = start_server(exported_dir)
    yield proc, port
    stop_server(proc)


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_tritonclient(server, exported_dir, binary):
    _, port = server
    triton = httpclient.InferenceServerClient(f"127.0.0.1:{port}")
    assert triton.is_server_live() and triton.is_server_ready()
    assert "binary_tensor_data" in triton.get_server_metadata()["extensions"]
    for name in MODELS:
        assert triton.is_model_ready(name)
        meta = triton.get_model_metadata(name)
        assert meta["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 1]}]
        for x in (np.array([[10.0]], np.float32), np.array([[-1], [0], [1], [2], [3], [4]], np.float32)):
            inp = httpclient.InferInput("x", list(x.shape), "FP32")
            inp.set_data_from_numpy(x, binary_data=binary)
            outputs = None if binary else [httpclient.InferRequestedOutput("y", binary_data=False)]
            y = triton.infer(name, [inp], outputs=outputs, request_id="r1").as_numpy("y")
            np.testing.assert_allclose(y, reference(exported_dir, name, x), atol=1e-6, rtol=0)
    with pytest.raises(Exception, match="unknown model"):
        triton.get_model_metadata("nope")
    triton.close()


def test_tfserving_predict_over_http(server, exported_dir):
    _, port = server
    for name in MODELS:
        r = httpx.post(
            f"http://127.0.0.1:{port}/v1/models/{name}:predict", json={"instances": [[10.0], [2.0]]}
        )
        assert r.status_code == 200
        np.testing.assert_allclose(
            r.json()["predictions"], reference(exported_dir, name, [10, 2]), atol=1e-6, rtol=0
        )


def test_sigterm_shuts_down_gracefully(server):
    proc, _ = server
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=30)
    # uvicorn finishes in-flight requests and the lifespan, then re-raises SIGTERM so that the exit
    # status says "terminated by SIGTERM" to the supervisor (uvicorn >= 0.29).
    assert proc.returncode in (0, -signal.SIGTERM), stderr
    assert "Application shutdown complete" in stderr
    assert "Finished server process" in stderr and "Traceback" not in stderr


def test_missing_artifacts_exit_2(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "serve", "--artifacts", str(tmp_path / "none")],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and "no such directory" in proc.stderr


@pytest.fixture
def port_in_use():
    """A port another server listens on."""
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        yield other.getsockname()[1]


# what blocks the start -> (--host, the flag the error line must name, the reason it gives)
START_FAILURES = {
    "port in use": (None, "--port", "the port is in use"),
    "address not of this machine": ("192.0.2.1", "--host", "192.0.2.1 is not an address of this machine"),
    "unresolvable host": ("no-such-host.invalid", "--host", "cannot resolve it"),
}


@pytest.mark.parametrize("case", sorted(START_FAILURES))
def test_start_up_failure_is_one_error_line_naming_the_flag(case, exported_dir, port_in_use):
    host, flag, reason = START_FAILURES[case]
    args = ["--port", str(port_in_use)] if host is None else ["--host", host, "--port", "0"]
    proc = subprocess.run(
        [sys.executable, "-m", "serve", "--artifacts", str(exported_dir), "--grpc-port", "0", *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    lines = proc.stderr.splitlines()
    assert proc.returncode == 2, proc.stderr
    assert lines[-1].startswith("error: cannot listen on ") and flag in lines[-1] and reason in lines[-1]
    assert [line for line in lines if "error" in line.lower()] == [lines[-1]], proc.stderr
    # nothing claims to serve, and no model loads, before or after the failure
    assert not [line for line in lines if "serving" in line or " ready" in line], proc.stderr
    assert proc.stdout.startswith("config ") and len(proc.stdout.splitlines()) == 1, proc.stdout


def test_the_serving_line_names_the_port_picked_for_port_0(exported_dir):
    proc = subprocess.Popen(
        [sys.executable, "-m", "serve", "--artifacts", str(exported_dir), "--port", "0", "--grpc-port", "0"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for line in proc.stderr:
            if line.startswith("serving "):
                break
        port = int(line.rsplit(":", 1)[1])
        assert port != 0 and f"http://127.0.0.1:{port}" in line, line
        assert httpx.get(f"http://127.0.0.1:{port}/v2/health/live", timeout=10).status_code == 200
    finally:
        stop_server(proc)
