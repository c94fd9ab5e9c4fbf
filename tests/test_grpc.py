"""The KServe V2 / Triton gRPC service of a real `python -m serve`, driven by `tritonclient.grpc`
unchanged (issue 12, section 2): health and metadata, raw and typed contents for both models,
bad input mapped to gRPC status codes with HTTP's messages, repository and statistics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pb_grpc
from tritonclient.utils import InferenceServerException

from bench._server import free_port, start_server, stop_server
from tests.serve_app import MODELS, assert_no_leak, reference
from tests.test_server_process_hardening import infer_ok

pytestmark = pytest.mark.slow

MAX_BODY = 65536


@pytest.fixture(scope="module")
def server(exported_dir):
    grpc_port = free_port()
    proc, port = start_server(
        exported_dir, "--grpc-port", str(grpc_port), "--max-body-bytes", str(MAX_BODY), "--max-rows", "1000"
    )
    yield proc, port, grpc_port
    stop_server(proc)


@pytest.fixture(scope="module")
def client(server):
    c = grpcclient.InferenceServerClient(f"127.0.0.1:{server[2]}")
    yield c
    c.close()


def infer(client, model: str, x: np.ndarray, **kwargs) -> np.ndarray:
    inp = grpcclient.InferInput("x", list(x.shape), kwargs.pop("datatype", "FP32"))
    inp.set_data_from_numpy(x)
    result = client.infer(model, [inp], **kwargs)
    assert result.get_response().model_version == "1"
    return result.as_numpy("y")


def test_health_and_metadata(client):
    assert client.is_server_live() and client.is_server_ready()
    meta = client.get_server_metadata()
    assert meta.name and "binary_tensor_data" in meta.extensions
    for model in MODELS:
        assert client.is_model_ready(model)
        m = client.get_model_metadata(model)
        assert m.name == model and list(m.versions) == ["1"] and m.platform == "onnxruntime_onnx"
        assert [(t.name, t.datatype, list(t.shape)) for t in m.inputs] == [("x", "FP32", [-1, 1])]
        assert [(t.name, t.datatype, list(t.shape)) for t in m.outputs] == [("y", "FP32", [-1, 1])]


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("rows", [1, 7, 1000])
def test_raw_contents_match_the_loader(client, exported_dir, model, rows):
    x = np.linspace(-50, 50, rows, dtype=np.float32).reshape(-1, 1)
    y = infer(client, model, x)
    assert y.dtype == np.float32 and y.shape == (rows, 1)
    np.testing.assert_array_equal(y, reference(exported_dir, model, x))


@pytest.mark.parametrize("datatype, dtype", [("FP64", np.float64), ("INT32", np.int32), ("UINT8", np.uint8)])
def test_other_datatypes_are_converted_like_http(client, exported_dir, datatype, dtype):
    x = np.array([[1], [2], [200]], dtype=dtype)
    y = infer(client, "keras_linear", x, datatype=datatype)
    np.testing.assert_array_equal(y, reference(exported_dir, "keras_linear", x.astype(np.float32)))


@pytest.mark.parametrize(
    "datatype, field, values",
    [
        ("FP32", "fp32_contents", [10.0, -1.5]),
        ("INT64", "int64_contents", [3, -4]),
        ("FP64", "fp64_contents", [0.25, 9]),
    ],
)
@pytest.mark.parametrize("model", MODELS)
def test_typed_contents(server, exported_dir, model, datatype, field, values):
    """Typed `contents` through tritonclient's own generated stub (tritonclient's InferInput sends raw)."""
    import grpc

    with grpc.insecure_channel(f"127.0.0.1:{server[2]}") as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        tensor = pb.ModelInferRequest.InferInputTensor(name="x", datatype=datatype, shape=[len(values), 1])
        getattr(tensor.contents, field).extend(values)
        response = stub.ModelInfer(
            pb.ModelInferRequest(model_name=model, id="r1", inputs=[tensor]), timeout=10
        )
    assert response.id == "r1" and list(response.outputs[0].shape) == [len(values), 1]
    y = np.frombuffer(response.raw_output_contents[0], dtype="<f4").reshape(-1, 1)
    np.testing.assert_array_equal(y, reference(exported_dir, model, values))


def expect_error(exported_dir, code: str, fragment: str, call) -> None:
    with pytest.raises(InferenceServerException) as info:
        call()
    assert info.value.status() == f"StatusCode.{code}", (info.value.status(), info.value.message())
    assert fragment in info.value.message(), info.value.message()
    assert len(info.value.message()) < 600
    assert_no_leak(info.value.message(), exported_dir)


def test_bad_input_maps_to_status_codes_and_serving_continues(server, client, exported_dir):
    one = np.array([[1.0]], dtype=np.float32)

    def raw(model="keras_linear", x=one, name="x", datatype="FP32", version="", outputs=None):
        inp = grpcclient.InferInput(name, list(x.shape), datatype)
        inp.set_data_from_numpy(x)
        return lambda: client.infer(model, [inp], model_version=version, outputs=outputs)

    expect_error(exported_dir, "NOT_FOUND", "unknown model", raw(model="nope"))
    expect_error(exported_dir, "NOT_FOUND", "no version", raw(version="2"))
    expect_error(exported_dir, "INVALID_ARGUMENT", "unknown input", raw(name="z" * 10_000))
    expect_error(exported_dir, "INVALID_ARGUMENT", "expected [rows, 1]", raw(x=np.ones((1, 2), np.float32)))
    expect_error(exported_dir, "INVALID_ARGUMENT", "NaN or infinity", raw(x=np.array([[np.nan]], np.float32)))
    expect_error(exported_dir, "INVALID_ARGUMENT", "overflows", raw(x=np.array([[3e38]], np.float32)))
    expect_error(exported_dir, "RESOURCE_EXHAUSTED", "--max-rows", raw(x=np.ones((1001, 1), np.float32)))
    expect_error(
        exported_dir, "RESOURCE_EXHAUSTED", "", raw(x=np.ones((20_000, 1), np.float64), datatype="FP64")
    )  # > 64 KiB
    expect_error(
        exported_dir, "INVALID_ARGUMENT", "not supported", raw(x=np.array([[b"a"]], object), datatype="BYTES")
    )
    expect_error(
        exported_dir,
        "INVALID_ARGUMENT",
        "unknown output",
        raw(outputs=[grpcclient.InferRequestedOutput("q")]),
    )
    # the byte count disagrees with the shape: declared INT64 but FP32 bytes sent
    inp = grpcclient.InferInput("x", [1, 1], "INT64")
    inp.set_data_from_numpy(np.ones((1, 1), np.int64))
    inp._raw_content = b"\0\0\0\0"
    expect_error(
        exported_dir, "INVALID_ARGUMENT", "bytes of binary data", lambda: client.infer("keras_linear", [inp])
    )
    np.testing.assert_array_equal(
        infer(client, "torch_linear", one), reference(exported_dir, "torch_linear", one)
    )
    infer_ok(server[1], exported_dir)  # HTTP is unaffected


def test_repository_and_statistics(client):
    index = client.get_model_repository_index()
    assert sorted((m.name, m.version, m.state) for m in index.models) == [(m, "1", "READY") for m in MODELS]
    with pytest.raises(InferenceServerException) as info:
        client.load_model("nope")
    assert info.value.status() == "StatusCode.NOT_FOUND"
    for call in (
        client.load_model,
        client.unload_model,
    ):  # poll mode (the default): models follow the manifest
        with pytest.raises(InferenceServerException) as info:
            call("keras_linear")
        assert info.value.status() == "StatusCode.INVALID_ARGUMENT"
        assert "--model-control explicit" in info.value.message()
    assert client.is_model_ready("keras_linear")  # still served

    before = client.get_inference_statistics("torch_linear").model_stats[0]
    infer(client, "torch_linear", np.ones((5, 1), np.float32))
    after = client.get_inference_statistics("torch_linear").model_stats[0]
    assert after.name == "torch_linear" and after.version == "1"
    assert after.inference_count == before.inference_count + 5
    assert after.execution_count == before.execution_count + 1
    assert after.inference_stats.success.count == before.inference_stats.success.count + 1
    assert after.inference_stats.success.ns > before.inference_stats.success.ns
    assert after.last_inference >= before.last_inference > 0
    assert len(client.get_inference_statistics().model_stats) == len(MODELS)


def test_grpc_binds_loopback_by_default(server):
    grpc_port = server[2]
    listening = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            if state == "0A" and int(local.rsplit(":", 1)[1], 16) == grpc_port:
                listening.append(local.rsplit(":", 1)[0])
    # 127.0.0.1, little-endian hex; grpcio listens on a dual-stack socket: ::ffff:127.0.0.1. Nothing else.
    assert listening in (["0100007F"], ["0000000000000000FFFF00000100007F"]), listening


def test_grpc_port_in_use_is_one_error_line(exported_dir):
    import socket
    import subprocess
    import sys

    from tests.conftest import ROOT

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        args = ["-m", "serve", "--artifacts", str(exported_dir), "--port", str(free_port())]
        r = subprocess.run(
            [sys.executable, *args, "--grpc-port", str(port)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert r.returncode == 2
    assert "--grpc-port" in r.stderr and "Traceback" not in r.stderr, r.stderr[-2000:]
    lines = r.stderr.splitlines()  # the error is the last line: nothing served, no model loaded
    assert lines[-1].startswith("error: cannot listen for gRPC") and "--grpc-port" in lines[-1], lines
    assert not [line for line in lines if "serving" in line or " ready" in line], lines
