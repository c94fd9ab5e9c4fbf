"""Benchmark against the servers people use: `python -m bench.peers` (`make bench-peers`).

`python -m serve` against KServe 0.21.0's ModelServer and Seldon MLServer 1.7.1, each serving the
same ONNX file through a small custom onnxruntime model (bench/peer_runtimes/; one intra-op thread,
like ours). The peers are installed pinned, each in its own virtual environment under
`--cache` (default ~/.cache/oneneuron-peers; MLServer's worker crashes with uvloop 0.23, so it gets
`uvloop<0.22`); that set-up step needs PyPI once, the measurements never touch the network.

Each repetition starts every server fresh, in a rotating order (interleaved), and measures: time
from spawn to the model's ready route answering 200; wrk V2 JSON batch 1 at 1 and 16 connections;
one 100k-row request as JSON (all) and with Triton's binary tensor extension (where supported);
tritonclient.grpc batch 1 from one client and from 16 (threads of one client process, each with
its own channel); gRPC batch 1 with h2load at c=1 and c=16, counting only the successes the
server's own statistics confirm (bench/grpc_h2load.py); RSS of the server's process tree after all
that. Both gRPC clients also measure bench/grpc_ceiling.py, a servicer that does no work: the
client's ceiling. Then the real models (bench/peer_batching.py: a wide MLP and the CNN, with and
without batching, at c=1, 16 and 64; `--protocols-only` skips them). Medians over the
repetitions; every ratio comes from this one run; targets and verdicts: bench/peer_table.py.
Servers: bench/peer_servers.py. Results go to bench/results/peers.json.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

from bench import grpc_h2load, peer_batching, peer_table
from bench._server import free_port, spawn, stop_server
from bench.peer_servers import (
    ORT,
    PEERS,
    Served,
    Server,
    command,
    ensure_peer,
    ours_flags,
    process_tree_rss_mib,
    running,
)
from bench.serving import LUA, _artifacts, wrk

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]
MODEL = "keras_linear"
ROWS = 100_000


def big_requests(n_features: int) -> tuple[bytes, bytes, int]:
    """A 100k-row request as V2 JSON and as JSON + binary tensor data (header length)."""
    x = np.round(np.random.default_rng(0).normal(size=(ROWS, n_features)), 5).astype(np.float32)
    tensor = {"name": "x", "shape": [ROWS, n_features], "datatype": "FP32"}
    as_json = json.dumps({"inputs": [tensor | {"data": x.ravel().tolist()}]}).encode()
    head = json.dumps(
        {
            "inputs": [tensor | {"parameters": {"binary_data_size": x.nbytes}}],
            "outputs": [{"name": "y", "parameters": {"binary_data": True}}],
        }
    ).encode()
    return as_json, head + x.tobytes(), len(head)


def timed_post(url: str, body: bytes, headers: dict[str, str], times: int) -> float | None:
    """Median ms of `times` POSTs (after one warm-up); None when the server refuses the request."""
    out = []
    with httpx.Client(timeout=120) as client:
        for i in range(times + 1):
            start = time.perf_counter()
            r = client.post(url, content=body, headers=headers)
            elapsed = time.perf_counter() - start
            if r.status_code != 200:
                logger.warning("%s: %d %s", url, r.status_code, r.text[:200])
                return None
            if i:
                out.append(elapsed * 1e3)
    return statistics.median(out)


def grpc_rps(port: int, seconds: float, connections: int = 1) -> float:
    """tritonclient.grpc batch 1 from `connections` threads, each with its own client and channel,
    each sending its next request when the last one is answered: requests per second in all.
    (One client process: the client's own CPU time is part of what is measured, for every server.)"""
    import threading

    import tritonclient.grpc as grpcclient

    counts = [0] * connections
    ready = threading.Barrier(connections + 1)
    stop = [0.0]

    def client_loop(i: int) -> None:
        client = grpcclient.InferenceServerClient(f"127.0.0.1:{port}")
        inp = grpcclient.InferInput("x", [1, 1], "FP32")
        inp.set_data_from_numpy(np.array([[10.0]], np.float32))
        for _ in range(20):  # warm-up
            client.infer(MODEL, [inp])
        ready.wait()
        while time.perf_counter() < stop[0]:
            client.infer(MODEL, [inp])
            counts[i] += 1
        client.close()

    threads = [threading.Thread(target=client_loop, args=(i,)) for i in range(connections)]
    for t in threads:
        t.start()
    start = time.perf_counter() + 0.05
    stop[0] = start + seconds
    ready.wait()
    for t in threads:
        t.join()
    return sum(counts) / (time.perf_counter() - start)


def h2load_rows(port: int, body: Path, seconds: float, successes) -> dict[str, float]:
    """gRPC with h2load at c=1 and c=16 (one stream per connection), verified by the server's own
    count of successes (bench/grpc_h2load.py); a 1 s warm-up first."""
    grpc_h2load.measure(port, body, 1, 1, successes)
    runs = {c: grpc_h2load.measure(port, body, c, seconds, successes) for c in (1, 16)}
    # h2load's 2xx and the server's count beside the verified figure, in the samples
    return {f"h2load_c{c}_rps": got["rps"] for c, got in runs.items()} | {"h2load_runs": runs}


def measure(server: Server, seconds: int, bodies: tuple[bytes, bytes, int], scratch: Path) -> dict:
    with running(server) as (proc, ready_s):
        infer = f"http://127.0.0.1:{server.http}/v2/models/{MODEL}/infer"
        script = scratch / "infer.lua"
        wrk(infer, 1, 1, script)  # warm-up
        row = {"ready_s": ready_s}
        row["http_c1_rps"] = wrk(infer, 1, seconds, script)["rps"]
        row["http_c16_rps"] = wrk(infer, 16, seconds, script)["rps"]
        as_json, as_binary, head = bodies
        row["json_100k_ms"] = timed_post(infer, as_json, {"Content-Type": "application/json"}, 3)
        row["binary_100k_ms"] = (
            None
            if server.name == "mlserver"  # no binary tensor data extension
            else timed_post(
                infer,
                as_binary,
                {"Content-Type": "application/octet-stream", "Inference-Header-Content-Length": str(head)},
                5,
            )
        )
        row["grpc_rps"] = grpc_rps(server.grpc, seconds)
        row["grpc_c16_rps"] = grpc_rps(server.grpc, seconds, 16)
        row |= h2load_rows(server.grpc, scratch / "infer.grpc", seconds, server.successes)
        row["rss_mib"] = process_tree_rss_mib(proc.pid)
    return row


def run(
    reps: int = 3,
    seconds: float = 3.0,
    artifacts: Path | None = None,
    cache: Path | None = None,
    models: bool = True,
) -> dict:
    """The protocol table on keras_linear (and, with `models`, bench/peer_batching.py's real models)."""
    cache = cache or Path.home() / ".cache" / "oneneuron-peers"
    bins = {name: ensure_peer(cache, name) for name in PEERS}
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        directory = _artifacts(artifacts, scratch / "artifacts")
        served = Served(MODEL, directory / f"{MODEL}.onnx", directory)
        (scratch / "infer.lua").write_text(LUA)
        x = np.array([[10.0]], np.float32)
        (scratch / "infer.grpc").write_bytes(grpc_h2load.infer_body(MODEL, {"x": x}))
        bodies = big_requests(n_features=1)
        names = ["ours", *PEERS]
        samples: dict[str, list[dict]] = {n: [] for n in names}
        ceiling: list[dict] = []
        for rep in range(reps):
            order = names[rep % len(names) :] + names[: rep % len(names)]  # rotate who goes first
            for name in order:
                logger.info("repetition %d/%d: %s", rep + 1, reps, name)
                row = measure(command(name, bins, served, scratch), seconds, bodies, scratch)
                samples[name].append(row)
            ceiling.append(grpc_ceiling(seconds, scratch / "infer.grpc"))
        flags = ours_flags()
        real = peer_batching.run(bins, cache, scratch, reps, seconds, flags) if models else None
    medians = {name: _medians(rows) for name, rows in samples.items()}
    top = _medians(ceiling)
    result = {
        "versions": {"ours": "python -m serve", **{k: v[0] for k, v in PEERS.items()}, "onnxruntime": ORT},
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "load_average": os.getloadavg(),
        },
        "settings": {"repetitions": reps, "seconds": seconds, "rows": ROWS, "h2load": "-c C -m 1"},
        "medians": medians,
        "samples": samples,
        "targets": peer_table.judge(medians, top),
        "grpc_client_ceiling": top | {"samples": ceiling},
    }
    if real is not None:
        real["targets"] = peer_table.judge_models(real)
        result["real_models"] = real
    return result


def _medians(rows: list[dict]) -> dict[str, float | None]:
    """Each figure's median over the repetitions (details such as `h2load_runs` stay in the samples)."""
    keys = [k for k, v in rows[0].items() if not isinstance(v, dict)]
    return {
        key: (statistics.median(vals) if (vals := [r[key] for r in rows if r[key] is not None]) else None)
        for key in keys
    }


def grpc_ceiling(seconds: float, body: Path) -> dict[str, float]:
    """The same gRPC measurements (tritonclient and h2load) against bench/grpc_ceiling.py, which
    answers without any work: how many requests each client itself can send here."""
    import tritonclient.grpc as grpcclient

    port = free_port()
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{port}")

    def ready() -> bool:
        try:
            return client.is_server_ready()
        except Exception:  # tritonclient's error while nothing listens yet
            return False

    proc = spawn(
        [sys.executable, "-m", "bench.grpc_ceiling", "--port", str(port)], ready, "bench.grpc_ceiling"
    )
    client.close()
    try:
        row = {"grpc_rps": grpc_rps(port, seconds), "grpc_c16_rps": grpc_rps(port, seconds, 16)}
        return row | h2load_rows(port, body, seconds, lambda: grpc_h2load.grpc_stats_count(port, MODEL))
    finally:
        stop_server(proc)


def format_table(result: dict) -> str:
    labels = {"ours": "ours", **{k: v[0] for k, v in PEERS.items()}}
    out = peer_table.protocol_table(result, labels)
    if "real_models" in result:
        out += "\n\nReal models, the same ONNX file on every server:\n"
        out += peer_table.models_table(result["real_models"], peer_batching.LABELS)
    load = " ".join(f"{v:.2f}" for v in result["machine"]["load_average"])
    return out + f"\nload average at the end: {load}"


def main() -> None:
    from oneneuron import cli

    p = cli.parser(
        "Benchmark python -m serve against KServe and MLServer on the same ONNX models.",
        "python -m bench.peers --reps 3",
        command="bench.peers",
    )
    p.add_argument("--reps", type=cli.positive_int, default=3, help="fresh servers per repetition")
    p.add_argument(
        "--seconds", type=cli.positive_int, default=3, help="each wrk, gRPC and h2load run (whole seconds)"
    )
    p.add_argument("--artifacts", type=Path, default=None, help="exported artifacts (default: artifacts/)")
    p.add_argument("--cache", type=Path, default=None, help="where the peers' venvs and the real models live")
    p.add_argument(
        "--protocols-only", action="store_true", help="skip the real models (wide MLP, CNN; batching)"
    )
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "peers.json")

    def _main(args) -> int:
        result = run(args.reps, args.seconds, args.artifacts, args.cache, not args.protocols_only)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        print(format_table(result))
        print(f"wrote {args.out}")
        return 0

    cli.run(_main, p.parse_args())


if __name__ == "__main__":
    main()
