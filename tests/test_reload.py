"""Zero-downtime reload and versions on a real `python -m serve` (issue 12, section 1).

Reload under load: HTTP and gRPC clients run while five new versions land (one tampered after
hashing): no request fails, every response's model_version answers with that version's own
prediction, and the tampered version is never served (log, /metrics and metadata say so).
Explicit model control over HTTP and gRPC, the versions routes and Triton's statistics.
"""

from __future__ import annotations

import asyncio
import threading
import time

import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from bench._server import free_port, start_server, stop_server
from tests.version_helpers import land, predict, variant

pytestmark = pytest.mark.slow

MODEL = "keras_linear"
XS = [float(x) for x in range(-3, 5)]


def v2_body(x: float) -> dict:
    return {"inputs": [{"name": "x", "shape": [1, 1], "datatype": "FP32", "data": [x]}]}


def wait_for(check, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def default_version(url: str) -> str:
    return httpx.get(f"{url}/v2/models/{MODEL}").json()["parameters"]["version"]


async def http_clients(url: str, stop: threading.Event, seen: list, failures: list, n: int = 8) -> None:
    async def one(i: int) -> None:
        async with httpx.AsyncClient(base_url=url, timeout=10) as http:
            k = i
            while not stop.is_set():
                x = XS[k % len(XS)]
                k += 1
                try:
                    r = await http.post(f"/v2/models/{MODEL}/infer", json=v2_body(x))
                except httpx.HTTPError as exc:
                    failures.append(repr(exc))
                    continue
                if r.status_code != 200:
                    failures.append(f"{r.status_code} {r.text[:200]}")
                    continue
                body = r.json()
                seen.append((body["model_version"], x, body["outputs"][0]["data"][0]))

    await asyncio.gather(*(one(i) for i in range(n)))


def grpc_client(address: str, stop: threading.Event, seen: list, failures: list) -> None:
    client = grpcclient.InferenceServerClient(address)
    k = 0
    while not stop.is_set():
        x = XS[k % len(XS)]
        k += 1
        inp = grpcclient.InferInput("x", [1, 1], "FP32")
        inp.set_data_from_numpy(np.array([[x]], np.float32))
        try:
            result = client.infer(MODEL, [inp])
        except InferenceServerException as exc:
            failures.append(str(exc))
            continue
        seen.append((result.get_response().model_version, x, float(result.as_numpy("y")[0, 0])))
    client.close()


def test_reload_under_load_serves_each_version_and_never_the_tampered_one(exported_copy):
    base = (exported_copy / f"{MODEL}.onnx").read_bytes()
    grpc_port = free_port()
    proc, port = start_server(exported_copy, "--poll-seconds", "0.1", "--grpc-port", str(grpc_port))
    url = f"http://127.0.0.1:{port}"
    models = {"1": base}  # version -> its bytes: what each answer must match
    tampered = None
    stop, seen, failures = threading.Event(), [], []
    try:
        loader = threading.Thread(
            target=lambda: asyncio.run(http_clients(url, stop, seen, failures)), daemon=True
        )
        grpc_thread = threading.Thread(
            target=grpc_client, args=(f"127.0.0.1:{grpc_port}", stop, seen, failures), daemon=True
        )
        loader.start()
        grpc_thread.start()
        for seed in range(5):  # five exports with different weights; the third one tampered
            data = variant(base, 1.5 + seed, -0.5 * seed)
            time.sleep(0.4)
            version = str(land(exported_copy, MODEL, data, tamper=seed == 2))
            if seed == 2:
                tampered = version
                time.sleep(0.5)  # the watcher has tried it (and refused it) before the next lands
                continue
            models[version] = data
            wait_for(lambda v=version: default_version(url) == v)
        time.sleep(0.3)
        stop.set()
        loader.join(30)
        grpc_thread.join(30)
        assert not loader.is_alive() and not grpc_thread.is_alive()

        assert failures == [], failures[:5]
        versions = {v for v, _, _ in seen}
        assert tampered not in versions
        assert versions <= set(models) and len(versions) >= 3, versions
        expected = {(v, x): float(predict(data, [x])[0, 0]) for v, data in models.items() for x in XS}
        wrong = [(v, x, y) for v, x, y in seen if y != expected[(v, x)]]
        assert wrong == [], wrong[:5]
        assert len(seen) > 200

        meta = httpx.get(f"{url}/v2/models/{MODEL}").json()
        status = {s["version"]: s for s in meta["version_status"]}
        newest = max(models, key=int)
        assert meta["parameters"]["version"] == newest and status[newest]["default"]
        assert meta["versions"] == sorted(status.keys() - {tampered}, key=int)
        metrics = httpx.get(f"{url}/metrics").text
        for v in set(models) & set(status):  # each listed version with its sha256
            labels = f'model="{MODEL}",sha256="{status[v]["sha256"]}",version="{v}"'
            assert f"serve_model_version_loaded{{{labels}}} 1.0" in metrics
        if tampered in status:  # still listed (kept versions): failed, with why
            assert status[tampered]["state"] == "FAILED" and "failed to load" in status[tampered]["reason"]
        assert f'serve_model_version_load_failures_total{{model="{MODEL}"}}' in metrics
    finally:
        stop.set()
        stop_server(proc)
    log = proc.stderr.read()
    assert f"model {MODEL} version {tampered}:" in log and "sha256" in log


@pytest.fixture
def explicit(exported_copy):
    grpc_port = free_port()
    proc, port = start_server(exported_copy, "--model-control", "explicit", "--grpc-port", str(grpc_port))
    yield (
        exported_copy,
        f"http://127.0.0.1:{port}",
        grpcclient.InferenceServerClient(f"127.0.0.1:{grpc_port}"),
    )
    stop_server(proc)


def infer(url: str, suffix: str = "", x: float = 10.0) -> httpx.Response:
    return httpx.post(f"{url}/v2/models/{MODEL}{suffix}/infer", json=v2_body(x))


def test_explicit_mode_loads_and_unloads_on_request_over_http_and_grpc(explicit):
    artifacts, url, grpc = explicit
    base = (artifacts / f"{MODEL}.onnx").read_bytes()
    v2 = variant(base, 4.0, 1.0)
    assert land(artifacts, MODEL, v2) == 2
    time.sleep(0.5)  # no watcher in explicit mode: still version 1
    assert infer(url).json()["model_version"] == "1"

    assert httpx.post(f"{url}/v2/repository/models/{MODEL}/load").status_code == 200
    r = infer(url)
    assert r.json()["model_version"] == "2" and r.json()["outputs"][0]["data"] == [41.0]
    index = httpx.post(f"{url}/v2/repository/index", json={}).json()
    assert {(m["name"], m["version"], m["state"]) for m in index if m["name"] == MODEL} == {
        (MODEL, "1", "READY"),
        (MODEL, "2", "READY"),
    }

    assert httpx.post(f"{url}/v2/repository/models/{MODEL}/unload").status_code == 200
    r = infer(url)
    assert r.status_code == 503 and "unloaded" in r.json()["error"]
    assert not grpc.is_model_ready(MODEL)
    assert httpx.get(f"{url}/v2/health/ready").status_code == 200  # unloaded on purpose: still ready
    index = httpx.post(f"{url}/v2/repository/index", json={"ready": True}).json()
    assert [m["name"] for m in index] == ["torch_linear"]

    grpc.load_model(MODEL)  # the same over gRPC
    assert grpc.is_model_ready(MODEL)
    assert infer(url).json()["model_version"] == "2"
    grpc.unload_model(MODEL)
    with pytest.raises(InferenceServerException) as info:
        grpc.infer(
            MODEL,
            [grpcclient.InferInput("x", [1, 1], "FP32").set_data_from_numpy(np.ones((1, 1), np.float32))],
        )
    assert info.value.status() == "StatusCode.UNAVAILABLE"
    r = httpx.post(f"{url}/v2/repository/models/nope/load")
    assert r.status_code == 404 and "does not list it" in r.json()["error"]

    # a tampered new version: load fails with why, and the previous one keeps serving
    grpc.load_model(MODEL)
    land(artifacts, MODEL, variant(base, 5.0, 0.0), tamper=True)
    r = httpx.post(f"{url}/v2/repository/models/{MODEL}/load")
    assert r.status_code == 200  # version 2 still passes; 3 is FAILED and never served
    assert infer(url).json()["model_version"] == "2"
    assert infer(url, "/versions/3").status_code == 503


def test_versions_routes_and_stats(explicit):
    artifacts, url, grpc = explicit
    base = (artifacts / f"{MODEL}.onnx").read_bytes()
    land(artifacts, MODEL, variant(base, 4.0, 1.0))
    assert httpx.post(f"{url}/v2/repository/models/{MODEL}/load").status_code == 200
    before = httpx.get(f"{url}/v2/models/{MODEL}/versions/1/stats").json()["model_stats"][0]

    y1 = float(predict(base, [10.0])[0, 0])
    r = infer(url, "/versions/1")
    assert r.json()["model_version"] == "1" and r.json()["outputs"][0]["data"] == [y1]
    r = infer(url, "/versions/2")
    assert r.json()["model_version"] == "2" and r.json()["outputs"][0]["data"] == [41.0]
    assert infer(url, "/versions/3").status_code == 404
    bad = '{"inputs": [{"name": "x", "shape": [1, 1], "datatype": "FP32", "data": [NaN]}]}'
    assert (
        httpx.post(f"{url}/v2/models/{MODEL}/versions/1/infer", content=bad).status_code == 400
    )  # a failure
    assert (
        httpx.post(f"{url}/v1/models/{MODEL}/versions/1:predict", json={"instances": "x"}).status_code == 400
    )
    r = httpx.post(f"{url}/v1/models/{MODEL}/versions/1:predict", json={"instances": [[10.0], [1.0]]})
    assert r.headers["model-version"] == "1" and r.json()["predictions"][0] == [y1]
    r = httpx.post(f"{url}/v1/models/{MODEL}:predict", json={"instances": [[10.0]]})
    assert r.headers["model-version"] == "2" and r.json()["predictions"] == [[41.0]]
    status = httpx.get(f"{url}/v1/models/{MODEL}").json()["model_version_status"]
    assert [(s["version"], s["state"]) for s in status] == [("2", "AVAILABLE"), ("1", "AVAILABLE")]
    inp = grpcclient.InferInput("x", [3, 1], "FP32")
    inp.set_data_from_numpy(np.ones((3, 1), np.float32))
    assert grpc.infer(MODEL, [inp], model_version="1").get_response().model_version == "1"

    after = httpx.get(f"{url}/v2/models/{MODEL}/versions/1/stats").json()["model_stats"][0]
    assert after["name"] == MODEL and after["version"] == "1"
    assert after["execution_count"] == before["execution_count"] + 3  # V2, TF Serving, gRPC
    assert after["inference_count"] == before["inference_count"] + 1 + 2 + 3
    assert after["inference_stats"]["success"]["count"] == before["inference_stats"]["success"]["count"] + 3
    assert after["inference_stats"]["fail"]["count"] == before["inference_stats"]["fail"]["count"] + 2
    assert after["last_inference"] > 0
    both = httpx.get(f"{url}/v2/models/{MODEL}/stats").json()["model_stats"]
    assert [s["version"] for s in both] == ["1", "2"] and both[1]["execution_count"] >= 2
    grpc_stats = grpc.get_inference_statistics(MODEL, "1").model_stats[0]
    assert grpc_stats.execution_count == after["execution_count"]
    assert httpx.get(f"{url}/v2/models/{MODEL}/versions/9/stats").status_code == 404


def test_a_model_the_manifest_drops_is_unloaded_and_an_unreadable_manifest_changes_nothing(exported_copy):
    from dataclasses import replace

    from oneneuron.fsio import Root
    from oneneuron.schema import Manifest
    from serve.engine.registry import Registry

    registry = Registry(exported_copy)
    assert registry.load_all()
    keras = registry.model(MODEL)
    path = exported_copy / "manifest.json"
    good = path.read_bytes()
    path.write_text("{not json")
    assert registry.reload() is False  # logged and counted; everything keeps serving
    assert registry.model(MODEL) is keras and registry.names == ["keras_linear", "torch_linear"]
    assert 'serve_manifest_reloads_total{result="failed"} 1.0' in registry.metrics.render().decode()
    path.write_bytes(good)
    manifest = Manifest.load(exported_copy)
    Root(exported_copy).write_json(
        "manifest.json",
        replace(
            manifest, artifacts=tuple(e for e in manifest.artifacts if e.model != "torch_linear")
        ).to_json(),
    )
    assert registry.reload() is True
    assert registry.names == [MODEL] and registry.model(MODEL) is keras  # unchanged bytes: not reloaded
    series = [line for line in registry.metrics.render().decode().splitlines() if "_version_loaded{" in line]
    assert series and not any('model="torch_linear"' in line for line in series)
