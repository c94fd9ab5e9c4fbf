"""gRPC load from a C client: h2load (Debian's nghttp2-client) posting one framed `ModelInferRequest`.

The tritonclient rows of bench/peers.py measure a Python client as much as the server (its
ceiling, bench/grpc_ceiling.py, is ~3,300 req/s here). h2load sends the same bytes over and over
on cleartext HTTP/2 (an `http://` URL is h2c with prior knowledge, h2load's default): a
`ModelInferRequest` (tritonclient.grpc.service_pb2) behind gRPC's 5-byte length prefix (a
compressed flag 0, then the length, 4 bytes big-endian), POSTed to
`/inference.GRPCInferenceService/ModelInfer` with `content-type: application/grpc` and
`te: trailers`.

h2load judges an answer by its HTTP status only, and a gRPC failure is an HTTP 200 whose
trailers carry `grpc-status` != 0. So every run reads the server's own count of successful
inferences before and after (`success_count`) and reports only those verified successes:
`verified = min(h2load's 2xx, the server's count)`, over h2load's measured duration.

Concurrency: `c` connections of one stream each (`h2load -c c -m 1`), as the tritonclient rows use
`c` channels; one connection multiplexing `c` streams is what one client process would do, but it
measures one HTTP/2 connection's serialization, not `c` clients.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np

PATH = "/inference.GRPCInferenceService/ModelInfer"
HEADERS = ("content-type: application/grpc", "te: trailers")
INSTALL = "h2load not found; install it with: apt-get install -y nghttp2-client"


def frame(message: bytes) -> bytes:
    """gRPC's length-prefixed message: compressed flag 0, 4-byte big-endian length, the bytes."""
    return b"\x00" + len(message).to_bytes(4, "big") + message


def infer_body(model: str, tensors: dict[str, np.ndarray]) -> bytes:
    """A framed `ModelInferRequest` for `model`, its inputs as raw little-endian contents."""
    from tritonclient.grpc import service_pb2 as pb
    from tritonclient.utils import np_to_triton_dtype

    request = pb.ModelInferRequest(model_name=model)
    for name, array in tensors.items():
        request.inputs.add(name=name, datatype=np_to_triton_dtype(array.dtype), shape=list(array.shape))
        request.raw_input_contents.append(np.ascontiguousarray(array).tobytes())
    return frame(request.SerializeToString())


def h2load(url: str, body: Path, connections: int, seconds: float, requests: int = 0) -> dict[str, float]:
    """One h2load run of `seconds` (or of `requests` requests in all, when given), one stream per
    connection: the 2xx answers and the measured duration (h2load's `finished in`)."""
    if shutil.which("h2load") is None:
        raise RuntimeError(INSTALL)
    length = ["-n", str(requests)] if requests else ["-D", f"{seconds:g}"]
    args = ["h2load", "-c", str(connections), "-m", "1", *length, "-d", str(body)]
    for header in HEADERS:
        args += ["-H", header]
    out = subprocess.run(
        [*args, url], capture_output=True, text=True, check=True, timeout=seconds + 60
    ).stdout
    return parse(out)


def parse(out: str) -> dict[str, float]:
    """h2load's summary: seconds, 2xx answers, failed and errored requests."""
    finished = re.search(r"finished in ([\d.]+)(ms|s),", out)
    codes = re.search(r"status codes: (\d+) 2xx", out)
    requests = re.search(
        r"requests: \d+ total, \d+ started, (\d+) done, \d+ succeeded, (\d+) failed, (\d+) errored", out
    )
    if not (finished and codes and requests):
        raise RuntimeError(f"h2load's output not understood:\n{out[-2000:]}")
    seconds = float(finished.group(1)) / (1000 if finished.group(2) == "ms" else 1)
    return {
        "seconds": seconds,
        "ok_2xx": int(codes.group(1)),
        "done": int(requests.group(1)),
        "failed": int(requests.group(2)),
        "errored": int(requests.group(3)),
    }


def measure(
    port: int, body: Path, connections: int, seconds: float, counter: Callable[[], int], requests: int = 0
) -> dict[str, float]:
    """h2load against 127.0.0.1:`port`, verified by `counter()` (the server's successes) read before
    and after: verified successes per second, with h2load's own figures beside."""
    url = f"http://127.0.0.1:{port}{PATH}"
    before = counter()
    got = h2load(url, body, connections, seconds, requests)
    counted = counter() - before
    verified = min(got["ok_2xx"], counted)
    return got | {"counted": counted, "verified": verified, "rps": verified / got["seconds"]}


# -- each server's own count of successful inferences --------------------------------------------
def ours_count(http_port: int, model: str) -> int:
    """`python -m serve`: Triton's statistics, `inference_stats.success.count` summed over versions."""
    r = httpx.get(f"http://127.0.0.1:{http_port}/v2/models/{model}/stats", timeout=10)
    r.raise_for_status()
    return sum(s["inference_stats"]["success"]["count"] for s in r.json()["model_stats"])


def prometheus_count(url: str, metric: str, labels: str) -> int:
    """The sum of `metric`'s samples whose label set contains `labels` (e.g. `model="m"`)."""
    text = httpx.get(url, timeout=10).text
    pattern = rf"^{re.escape(metric)}\{{([^}}]*)\}}\s+([0-9.e+]+)$"
    return int(sum(float(v) for lab, v in re.findall(pattern, text, re.M) if labels in lab))


def kserve_count(http_port: int, model: str) -> int:
    """KServe: requests whose predict returned and were post-processed (its Prometheus histogram
    `request_postprocess_seconds`, observed for REST and gRPC alike)."""
    return prometheus_count(
        f"http://127.0.0.1:{http_port}/metrics", "request_postprocess_seconds_count", f'model_name="{model}"'
    )


def mlserver_count(metrics_port: int, model: str) -> int:
    """MLServer: its data plane's `model_infer_request_success` counter (REST and gRPC alike)."""
    return prometheus_count(
        f"http://127.0.0.1:{metrics_port}/metrics", "model_infer_request_success_total", f'model="{model}"'
    )


def grpc_stats_count(grpc_port: int, model: str) -> int:
    """Any Triton-shaped gRPC server (bench/grpc_ceiling.py counts its answers there):
    `ModelStatistics` success count."""
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(f"127.0.0.1:{grpc_port}")
    try:
        stats = client.get_inference_statistics(model, as_json=True)
    finally:
        client.close()
    return sum(int(s["inference_stats"]["success"].get("count", 0)) for s in stats["model_stats"])
