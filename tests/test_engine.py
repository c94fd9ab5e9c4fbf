"""The engine's scheduling (issue 23 items 2 and 3): runs off the event loop on a bounded pool per
model, a bounded queue answering 503 + Retry-After, and dynamic batching with Triton's batch_stats."""

from __future__ import annotations

import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from tests import architectures
from tests.serve_app import client, reference


def v2(feeds: dict) -> dict:
    types = {"float32": "FP32", "int64": "INT64"}
    return {
        "inputs": [
            {"name": k, "shape": list(v.shape), "datatype": types[v.dtype.name], "data": v.ravel().tolist()}
            for k, v in feeds.items()
        ]
    }


def test_health_answers_while_a_slow_model_is_saturated(architectures_dir):
    """Two clients keep the CNN busy (a real server, binary bodies); /v2/health/ready answers in a
    fraction of one run's time (on the event loop a run used to hold every other request, health
    checks included)."""
    import http.client
    import json

    from bench._server import start_server, stop_server

    image = architectures.inputs("cnn", rows=48)["image"]
    head = json.dumps(
        {
            "inputs": [
                {
                    "name": "image",
                    "shape": list(image.shape),
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": image.nbytes},
                }
            ]
        }
    ).encode()
    headers = {"Inference-Header-Content-Length": str(len(head))}
    proc, port = start_server(
        architectures_dir / "artifacts", "--max-batch-size", "0", "--max-body-bytes", str(32 << 20)
    )
    try:
        runs, health, stop = [], [], threading.Event()

        def load() -> None:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            while not stop.is_set():
                start = time.perf_counter()
                conn.request("POST", "/v2/models/cnn/infer", body=head + image.tobytes(), headers=headers)
                r = conn.getresponse()
                assert r.status == 200, r.read()
                r.read()
                runs.append(time.perf_counter() - start)
            conn.close()

        with ThreadPoolExecutor(2) as pool:
            futures = [pool.submit(load) for _ in range(2)]
            time.sleep(0.5)
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            for _ in range(20):
                start = time.perf_counter()
                conn.request("GET", "/v2/health/ready")
                r = conn.getresponse()
                assert r.status == 200
                r.read()
                health.append(time.perf_counter() - start)
                time.sleep(0.02)
            stop.set()
            for f in futures:
                f.result()
    finally:
        stop_server(proc)
    one_run = statistics.median(runs) / 2  # two clients share one worker: a request waits ~2 runs
    print(f"health median {statistics.median(health) * 1e3:.2f} ms; one CNN run ~{one_run * 1e3:.2f} ms")
    assert statistics.median(health) < one_run / 4, (statistics.median(health), one_run)


def test_a_full_queue_is_503_with_retry_after(architectures_dir):
    body = v2(architectures.inputs("cnn", rows=2))
    artifacts = architectures_dir / "artifacts"
    with client(artifacts, instances=1, max_queue=1, max_batch_size=0) as api, ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(lambda _: api.post("/v2/models/cnn/infer", json=body), range(8)))
    codes = sorted(r.status_code for r in responses)
    assert 200 in codes and 503 in codes, codes
    busy = next(r for r in responses if r.status_code == 503)
    assert busy.headers["retry-after"] == "1" and "--max-queue 1" in busy.json()["error"]


def test_concurrent_requests_are_batched_and_equal_single_runs(exported_dir):
    """Requests of 70 rows each (a request of at most 64 values to a model this cheap runs inline,
    unbatched: serve/engine/scheduler.py)."""
    xs = [[float(i * 100 + j) for j in range(70)] for i in range(12)]
    with client(exported_dir, max_batch_size=1024, max_queue_delay_us=50_000, instances=1) as api:

        def one(x: list):
            body = {"inputs": [{"name": "x", "shape": [70, 1], "datatype": "FP32", "data": x}]}
            return api.post("/v2/models/keras_linear/infer", json=body)

        with ThreadPoolExecutor(len(xs)) as pool:
            responses = list(pool.map(one, xs))
        stats = api.get("/v2/models/keras_linear/stats").json()["model_stats"][0]
    for x, r in zip(xs, responses, strict=True):  # each request gets its own rows back
        want = reference(exported_dir, "keras_linear", x).ravel()
        np.testing.assert_array_equal(np.float32(r.json()["outputs"][0]["data"]), want)
    sizes = {b["batch_size"]: b["compute_infer"]["count"] for b in stats["batch_stats"]}
    assert max(sizes) > 70, sizes
    assert sum(size * n for size, n in sizes.items()) == 70 * len(xs)  # every row ran exactly once
    assert stats["execution_count"] < len(xs) and stats["inference_count"] == 70 * len(xs)


def test_a_bad_request_in_a_batch_fails_alone(exported_dir):
    """FP64 1e39 is beyond float32: it passes decoding (an infinity) and the run refuses it; merged with
    good requests, the batch runs again request by request, and only the bad one fails."""
    xs = [1.0, 2.0, 1e39, 3.0, 4.0, 5.0]
    with client(exported_dir, max_batch_size=1024, max_queue_delay_us=50_000, instances=1) as api:

        def one(x: float):
            kind = "FP64" if x == 1e39 else "FP32"  # FP64 1e39 is valid, and infinite as float32
            body = {"inputs": [{"name": "x", "shape": [70, 1], "datatype": kind, "data": [x] * 70}]}
            return api.post("/v2/models/torch_linear/infer", json=body)

        with ThreadPoolExecutor(len(xs)) as pool:
            responses = list(pool.map(one, xs))
        stats = api.get("/v2/models/torch_linear/stats").json()["model_stats"][0]
    for x, r in zip(xs, responses, strict=True):
        if x == 1e39:
            assert r.status_code == 400 and "NaN or infinity" in r.json()["error"], r.text
        else:
            assert r.status_code == 200, r.text
            want = reference(exported_dir, "torch_linear", [x] * 70).ravel()
            np.testing.assert_array_equal(np.float32(r.json()["outputs"][0]["data"]), want)
    assert stats["inference_stats"]["fail"]["count"] == 1


def test_triton_config_dynamic_batching_is_honoured(exported_dir, tmp_path):
    from serve.engine.scheduler import Limits, triton_limits

    config = tmp_path / "config.pbtxt"
    config.write_text(
        'name: "m"\nmax_batch_size: 32\ninstance_group { count: 2 kind: KIND_CPU }\n'
        "dynamic_batching { preferred_batch_size: [8, 4] max_queue_delay_microseconds: 300 }\n"
    )
    assert triton_limits(Limits(), config) == Limits(2, 256, 32, 300, (4, 8))
    assert triton_limits(Limits(max_batch_size=0, instances=3), config).batching is False
    assert triton_limits(Limits(), tmp_path / "none.pbtxt") == Limits(1, 256, 0, 0, ())
