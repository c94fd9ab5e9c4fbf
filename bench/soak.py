"""Load and soak the server: `python -m bench.soak [--artifacts DIR] [--seconds 30] [--clients 16]`.

Starts `python -m serve` on a free loopback port and runs `--clients` concurrent clients
(asyncio + httpx, one keep-alive connection each) for `--seconds`, mixing valid requests
(V2 JSON, V2 binary tensors, TF Serving predict) with invalid ones (malformed JSON, wrong
shape, NaN, unknown model, lying binary sizes, too many rows, a body over the limit, wrong
method). Checks: no 5xx; every invalid request gets its 4xx with `{"error": ...}` and no
path or traceback; every valid prediction equals the embeddable loader's within 1e-6; no
transport errors (dropped connections); the server's resident memory (VmRSS) after warm-up
grows < 10%. Prints one JSON summary; exit 1 when a check fails. Loopback only; stops itself.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from bench._server import start_server, stop_server
from oneneuron import cli

MAX_ROWS = 64  # the server runs with --max-rows 64 and --max-body-bytes 65536 so the 413s are cheap
MAX_BODY = 65536
MODELS = ("keras_linear", "torch_linear")
LEAKS = ("Traceback", "/tmp", 'File "')


@dataclass(frozen=True)
class SoakConfig:
    """One soak run."""

    artifacts: Path = Path("artifacts")  # an exported artifacts directory
    seconds: float = 30.0  # total duration, warm-up included
    clients: int = 16  # concurrent clients, one connection each
    warmup: float = 5.0  # the RSS baseline is taken this long after the start
    atol: float = 1e-6  # |server - loader| per prediction


@dataclass
class Summary:
    """What a soak run measured; `ok` says whether every check held."""

    requests: int = 0
    valid: int = 0
    invalid: int = 0
    by_status: dict[str, int] = field(default_factory=dict)
    server_errors_5xx: int = 0
    wrong_status: int = 0  # an invalid request not answered with its 4xx, or a valid one not 200
    wrong_numbers: int = 0  # a valid response beyond atol from the loader
    bad_error_bodies: int = 0  # an error not {"error": str}, or leaking a path or traceback
    transport_errors: int = 0  # dropped connections, resets, timeouts
    rss_kib_after_warmup: int = 0
    rss_kib_max: int = 0
    rss_kib_end: int = 0
    rss_growth: float = 0.0  # (max after warm-up - baseline) / baseline
    seconds: float = 0.0
    requests_per_second: float = 0.0
    server_alive: bool = False  # still running when the clients stopped
    examples: list[str] = field(default_factory=list)  # the first few failures, for the log
    ok: bool = False


def rss_kib(pid: int) -> int:
    """Resident set size of `pid` in KiB, from /proc/<pid>/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/{pid}/status has no VmRSS")


class Client:
    """One client: a keep-alive connection and a deterministic mix of requests."""

    INVALID = (
        "malformed_json",
        "shape_mismatch",
        "nan",
        "unknown_model",
        "binary_lies",
        "too_many_rows",
        "body_too_large",
        "wrong_method",
    )
    VALID = ("v2_json", "v2_binary", "v1_predict")

    def __init__(self, index: int, url: str, reference: dict[str, Any], summary: Summary, config: SoakConfig):
        self.rng = np.random.default_rng(index)
        self.url, self.reference, self.summary, self.config = url, reference, summary, config
        self.kinds = [*self.VALID * 3, *self.INVALID]  # ~53% valid
        self.i = index

    def fail(self, kind: str, what: str) -> None:
        if len(self.summary.examples) < 10:
            self.summary.examples.append(f"{kind}: {what[:300]}")

    async def run(self, until: float) -> None:
        async with httpx.AsyncClient(
            base_url=self.url, timeout=10, limits=httpx.Limits(max_connections=1, max_keepalive_connections=1)
        ) as http:
            while time.monotonic() < until:
                kind = self.kinds[self.i % len(self.kinds)]
                self.i += 1
                try:
                    await self.one(http, kind)
                except httpx.TransportError as exc:
                    self.summary.transport_errors += 1
                    self.fail(kind, f"{type(exc).__name__}: {exc}")

    async def one(self, http: httpx.AsyncClient, kind: str) -> None:
        s = self.summary
        name = MODELS[self.i % 2]
        rows = int(self.rng.integers(1, 9))
        x = self.rng.uniform(-1000, 1000, size=(rows, 1)).astype(np.float32)
        infer, predict = f"/v2/models/{name}/infer", f"/v1/models/{name}:predict"
        tensor = {"name": "x", "shape": [rows, 1], "datatype": "FP32"}
        if kind == "v2_json":
            r = await http.post(infer, json={"inputs": [{**tensor, "data": x.ravel().tolist()}]})
            y = r.json()["outputs"][0]["data"] if r.status_code == 200 else None
        elif kind == "v2_binary":
            head = json.dumps(
                {
                    "inputs": [{**tensor, "parameters": {"binary_data_size": 4 * rows}}],
                    "parameters": {"binary_data_output": True},
                }
            ).encode()
            r = await http.post(
                infer,
                content=head + x.astype("<f4").tobytes(),
                headers={"Inference-Header-Content-Length": str(len(head))},
            )
            y = None
            if r.status_code == 200:
                n = int(r.headers["inference-header-content-length"])
                y = np.frombuffer(r.content[n:], dtype="<f4")
        elif kind == "v1_predict":
            r = await http.post(predict, json={"instances": x.tolist()})
            y = np.asarray(r.json()["predictions"]).ravel() if r.status_code == 200 else None
        else:
            r, expected = await self.invalid(http, kind, name, tensor, x)
            s.requests += 1
            s.invalid += 1
            self.count(r)
            if r.status_code != expected:
                s.wrong_status += 1
                self.fail(kind, f"status {r.status_code}, expected {expected}: {r.text}")
            try:
                error = r.json()["error"]
                assert isinstance(error, str) and not any(
                    m in error for m in (*LEAKS, str(self.config.artifacts))
                )
            except Exception:
                s.bad_error_bodies += 1
                self.fail(kind, f"error body {r.text!r}")
            return
        s.requests += 1
        s.valid += 1
        self.count(r)
        if r.status_code != 200:
            s.wrong_status += 1
            self.fail(kind, f"status {r.status_code}: {r.text}")
            return
        want = self.reference[name](x).ravel()  # the embeddable loader on the same float32 rows
        if not np.allclose(np.asarray(y, dtype=np.float64), want, atol=self.config.atol, rtol=0):
            s.wrong_numbers += 1
            self.fail(kind, f"x {x.ravel().tolist()}: got {list(y)}, loader {want.tolist()}")

    async def invalid(self, http, kind, name, tensor, x) -> tuple[httpx.Response, int]:
        infer = f"/v2/models/{name}/infer"
        if kind == "malformed_json":
            return await http.post(infer, content=b'{"inputs": [{"name": "x", '), 400
        if kind == "shape_mismatch":
            return await http.post(
                infer, json={"inputs": [{**tensor, "shape": [len(x) + 1, 1], "data": x.ravel().tolist()}]}
            ), 400
        if kind == "nan":
            return await http.post(
                f"/v1/models/{name}:predict", content=b'{"instances": [[1.0], [NaN]]}'
            ), 400
        if kind == "unknown_model":
            return await http.post("/v2/models/..%2F..%2Fetc%2Fpasswd/infer", json={"inputs": []}), 404
        if kind == "binary_lies":
            head = json.dumps(
                {"inputs": [{**tensor, "parameters": {"binary_data_size": 4 * len(x) + 4}}]}
            ).encode()
            return await http.post(
                infer,
                content=head + x.astype("<f4").tobytes(),
                headers={"Inference-Header-Content-Length": str(len(head))},
            ), 400
        if kind == "too_many_rows":
            return await http.post(
                f"/v1/models/{name}:predict", json={"instances": [[1.0]] * (MAX_ROWS + 1)}
            ), 413
        if kind == "body_too_large":
            return await http.post(infer, content=b" " * (MAX_BODY + 1)), 413
        return await http.get(infer), 405  # wrong_method

    def count(self, r: httpx.Response) -> None:
        key = str(r.status_code)
        self.summary.by_status[key] = self.summary.by_status.get(key, 0) + 1
        if r.status_code >= 500:
            self.summary.server_errors_5xx += 1
            self.fail("5xx", r.text)


async def _drive(config: SoakConfig, port: int, pid: int, reference: dict[str, Any]) -> Summary:
    summary = Summary()
    start = time.monotonic()
    until = start + config.seconds
    clients = [
        Client(i, f"http://127.0.0.1:{port}", reference, summary, config) for i in range(config.clients)
    ]
    tasks = [asyncio.create_task(c.run(until)) for c in clients]
    samples = []
    await asyncio.sleep(config.warmup)
    summary.rss_kib_after_warmup = rss_kib(pid)
    while not all(t.done() for t in tasks):
        samples.append(rss_kib(pid))
        await asyncio.wait(tasks, timeout=0.5)
    for t in tasks:
        t.result()  # a bug in the client itself is not a server failure: raise it
    summary.rss_kib_end = rss_kib(pid)
    summary.rss_kib_max = max([summary.rss_kib_end, *samples])
    summary.rss_growth = (summary.rss_kib_max - summary.rss_kib_after_warmup) / summary.rss_kib_after_warmup
    summary.seconds = time.monotonic() - start
    summary.requests_per_second = summary.requests / summary.seconds
    return summary


def soak(config: SoakConfig) -> Summary:
    """Run the soak against a fresh server process; returns the summary (`ok` says pass/fail)."""
    from serve import load  # the reference: what an embedding app computes

    reference = {name: load(name, config.artifacts).predict for name in MODELS}
    proc, port = start_server(
        config.artifacts, "--max-rows", str(MAX_ROWS), "--max-body-bytes", str(MAX_BODY)
    )
    try:
        summary = asyncio.run(_drive(config, port, proc.pid, reference))
        summary.server_alive = proc.poll() is None
    finally:
        stop_server(proc)
    summary.ok = (
        summary.requests > 0
        and summary.server_alive
        and summary.server_errors_5xx == 0
        and summary.wrong_status == 0
        and summary.wrong_numbers == 0
        and summary.bad_error_bodies == 0
        and summary.transport_errors == 0
        and summary.rss_growth < 0.10
    )
    return summary


def main() -> None:
    d = SoakConfig()
    p = cli.parser(
        "Soak the inference server: concurrent valid and invalid requests, checked.",
        "python -m bench.soak --artifacts artifacts --seconds 30 --clients 16",
        command="bench.soak",
    )
    cli.artifacts_arg(p, writes=False)
    p.add_argument("--seconds", type=cli.positive_float, default=d.seconds, help="duration, warm-up included")
    p.add_argument("--clients", type=cli.positive_int, default=d.clients, help="concurrent clients")

    def _main(args) -> int:
        cli.ensure_dir(args.artifacts, create=False)
        warmup = min(d.warmup, args.seconds / 3)
        summary = soak(
            SoakConfig(artifacts=args.artifacts, seconds=args.seconds, clients=args.clients, warmup=warmup)
        )
        print(json.dumps(asdict(summary), indent=2))
        return 0 if summary.ok else 1

    cli.run(_main, p.parse_args())


if __name__ == "__main__":
    main()
