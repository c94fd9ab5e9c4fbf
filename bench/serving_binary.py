"""Row "6 serving cnn binary b=1" (issue 20): one V2 infer round trip with the binary tensor extension.

A real `python -m serve` process on 127.0.0.1 serving the CNN of bench/architectures.py (3x96x96
images, brought in with export_byom), driven by one keep-alive httpx client that sends the image as
raw float32 bytes after the JSON header (`Inference-Header-Content-Length`, Triton's
extension_binary_data.md), asks for the output in binary, and decodes it. Against the bare
`InferenceSession.run` on the same file in this process (the loader's session options): issue 20's
target is <= 1.1x the bare call. Each sample is the mean of a fixed number of round trips (or bare
calls), interleaved; the first response is compared with the bare call's output before timing.
"""

from __future__ import annotations

import http.client
import json
import statistics
import time
from pathlib import Path

import httpx
import numpy as np

from bench import architectures
from bench._core import Row, interleave
from bench._server import start_server, stop_server
from bench.latency import bare_session

MODEL = "cnn"
TIMING = {False: (200, 21), True: (10, 3)}  # (round trips per sample, samples) for the full run, --quick
HEADER = "Inference-Header-Content-Length"
_IMAGE = "image 1x3x96x96 float32"
# (subject key, row, subject, judged against issue 20's target): the judged round trip first, then
# where its time goes, each against the same bare call in the same run
ROWS = (
    (
        "httpx",
        f"6 serving {MODEL} binary b=1",
        f"python -m serve, V2 infer with binary tensors (httpx keep-alive, {_IMAGE})",
        True,
    ),
    (
        "http.client",
        f"6 serving {MODEL} binary b=1 stdlib client",
        "the same request from http.client (stdlib, keep-alive): httpx's share",
        False,
    ),
    (
        "ready",
        f"6 serving {MODEL} GET ready",
        "GET /v2/health/ready (http.client): the floor of any round trip to this server",
        False,
    ),
)


def binary_request(feeds: dict[str, np.ndarray]) -> tuple[bytes, dict[str, str]]:
    """The V2 infer body for `feeds` with every tensor in binary, every output asked for in binary."""
    inputs = [
        {
            "name": name,
            "shape": list(arr.shape),
            "datatype": {"float32": "FP32", "int64": "INT64"}[arr.dtype.name],
            "parameters": {"binary_data_size": arr.nbytes},
        }
        for name, arr in feeds.items()
    ]
    header = json.dumps({"inputs": inputs, "parameters": {"binary_data_output": True}}).encode()
    raw = b"".join(a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes() for a in feeds.values())
    return header + raw, {HEADER: str(len(header)), "Content-Type": "application/octet-stream"}


def decode(status: int, header_length: str | None, content: bytes) -> dict[str, np.ndarray]:
    """The outputs of a binary V2 response ({name: float32 array}); `header_length`: its
    Inference-Header-Content-Length."""
    if status != 200 or header_length is None:
        raise RuntimeError(f"expected 200 with binary outputs, got {status}: {content[:300]!r}")
    n = int(header_length)
    head, offset, outputs = json.loads(content[:n]), n, {}
    for out in head["outputs"]:
        size = out["parameters"]["binary_data_size"]
        if out["datatype"] != "FP32":
            raise RuntimeError(f"output {out['name']!r}: expected FP32, got {out['datatype']}")
        outputs[out["name"]] = np.frombuffer(content[offset : offset + size], "<f4").reshape(out["shape"])
        offset += size
    return outputs


def binary_rows(artifacts: Path, quick: bool = False) -> list[Row]:
    """The served binary round trip vs the bare call for the CNN at batch 1 (judged), and two rows
    without a target that say where the time goes: the same request from the standard library's
    http.client (the client's share) and a GET of /v2/health/ready (the floor of any round trip)."""
    artifacts = architectures.architecture_artifacts(artifacts)
    per_sample, reps = TIMING[quick]
    feeds = architectures.example_feeds(MODEL, 1)
    bare = bare_session(architectures.onnx_path(artifacts, MODEL))
    names = [o.name for o in bare.get_outputs()]
    want = dict(zip(names, bare.run(names, feeds), strict=True))
    body, headers = binary_request(feeds)
    path = f"/v2/models/{MODEL}/infer"
    proc, port = start_server(artifacts)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

            def with_httpx() -> dict[str, np.ndarray]:
                r = client.post(path, content=body, headers=headers)
                return decode(r.status_code, r.headers.get(HEADER), r.content)

            def with_stdlib(method: str = "POST", target: str = path) -> dict[str, np.ndarray] | None:
                post = method == "POST"
                conn.request(method, target, body=body if post else None, headers=headers if post else {})
                r = conn.getresponse()
                content = r.read()
                if post:
                    return decode(r.status, r.getheader(HEADER), content)
                if r.status != 200:
                    raise RuntimeError(f"{target} answered {r.status}: {content[:300]!r}")
                return None

            subjects = {
                "httpx": with_httpx,
                "http.client": with_stdlib,
                "ready": lambda: with_stdlib("GET", "/v2/health/ready"),
            }
            for name in ("httpx", "http.client"):  # the same answer, or the ratio means nothing
                got = subjects[name]()
                for k, v in want.items():
                    np.testing.assert_allclose(got[k], v, rtol=1e-6, atol=1e-6, err_msg=f"{name}: output {k}")
            timed = {}
            for name, fn in subjects.items():
                # http.client does not reconnect by itself when the server has closed an idle
                # connection (uvicorn's keep-alive timeout, 5 s, passes while another subject runs):
                # each subject starts on a fresh one, opened by its untimed warm-up sample
                conn.close()
                timed[name] = _versus(fn, lambda: bare.run(names, feeds), per_sample, reps)
            conn.close()
    finally:
        stop_server(proc)
    return [_row(label, subject, timed[key], judged) for key, label, subject, judged in ROWS]


# the samples' means (us) of the subject and the bare call, then every timed call's (us) of each
Timed = tuple[list[float], list[float], list[float], list[float]]


def _versus(fn, bare_fn, per_sample: int, reps: int) -> Timed:
    """`fn` against `bare_fn`, `per_sample` calls per sample, interleaved `reps` times after one
    untimed sample of each."""
    _block(bare_fn, per_sample, [])
    _block(fn, per_sample, [])
    fn_times: list[float] = []
    bare_times: list[float] = []
    s, base = interleave(
        lambda: _block(fn, per_sample, fn_times),
        lambda: _block(bare_fn, per_sample, bare_times),
        reps,
        warmup=0,
    )
    return s, base, fn_times, bare_times


def _row(label: str, subject: str, timed: Timed, judged: bool) -> Row:
    s, base, s_times, b_times = timed
    return Row(
        label,
        subject,
        "bare InferenceSession.run (in process)",
        "us/call",
        s,
        base,
        target="<= 1.1x" if judged else "",
        target_ratio=1.1 if judged else None,
        extra={
            "calls_per_sample": len(s_times) // len(s),  # every sample the same count
            "p50_us": _pct(s_times, 50),
            "p99_us": _pct(s_times, 99),
            "baseline_p50_us": _pct(b_times, 50),
            "baseline_p99_us": _pct(b_times, 99),
        },
    )


def _block(fn, calls: int, times: list[float]) -> float:
    """Run `fn` `calls` times, each timed into `times` (us); returns the mean in us."""
    start = time.perf_counter()
    for _ in range(calls):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e6)
    return (time.perf_counter() - start) / calls * 1e6


def _pct(values: list[float], p: int) -> float:
    return statistics.quantiles(values, n=100)[p - 1] if len(values) > 1 else values[0]
