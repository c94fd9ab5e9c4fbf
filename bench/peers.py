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
its own channel); RSS of the server's process tree after all that.
Medians over the repetitions; every ratio comes from this one run. Results go to
bench/results/peers.json.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np

from bench._server import answers, free_port, spawn, stop_server
from bench.serving import LUA, _artifacts, wrk

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]
RUNTIMES = ROOT / "bench" / "peer_runtimes"
MODEL = "keras_linear"
ROWS = 100_000
ORT = "onnxruntime==1.32.0"  # the same runtime as ours (requirements.txt)
PEERS = {
    "kserve": ("KServe 0.21.0", ["kserve==0.21.0", ORT]),
    "mlserver": ("MLServer 1.7.1", ["mlserver==1.7.1", "uvloop<0.22", ORT]),
}
QUIET_LOGS = {  # per-request log lines off for the peers, as ours runs by default
    "version": 1,
    "disable_existing_loggers": False,
    "loggers": {
        name: {"level": "WARNING"} for name in ("uvicorn", "uvicorn.access", "kserve", "kserve.trace")
    },
}
TARGETS = {
    "http_c1_rps": "ours >= 2x the best peer",
    "http_c16_rps": "ours >= 2x the best peer",
    "grpc_rps": "ours >= 2x the best peer",
    "grpc_c16_rps": "ours >= 2x the best peer",
    "json_100k_ms": "ours <= the best peer",
    "binary_100k_ms": "ours <= best peer / 10",
    "rss_mib": "ours <= the smallest peer",
    "ready_s": "ours <= 0.5 s",
}


def ensure_peer(cache: Path, name: str) -> Path:
    """The peer's virtual environment (created and installed pinned once); returns its bin dir."""
    label, packages = PEERS[name]
    venv = cache / name
    marker = venv / ".installed"
    if marker.is_file() and marker.read_text() == "\n".join(packages):
        return venv / "bin"
    logger.info("installing %s into %s (pip, once)", label, venv)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", *packages],
        check=True,
        timeout=1800,
    )
    marker.write_text("\n".join(packages))
    return venv / "bin"


@dataclass
class Server:
    name: str
    command: list[str]
    env: dict[str, str]
    http: int
    grpc: int
    ready_path: str


def command(name: str, bins: dict[str, Path], model: Path, scratch: Path) -> Server:
    """How to start `name` on free ports, serving `model`."""
    http, grpc = free_port(), free_port()
    env = {**os.environ, "PYTHONPATH": str(RUNTIMES)}
    ready = f"/v2/models/{MODEL}/ready"
    if name == "ours":
        env["PYTHONPATH"] = str(ROOT)
        args = ["--artifacts", str(model.parent), "--port", str(http), "--grpc-port", str(grpc)]
        return Server(name, [sys.executable, "-m", "serve", *args], env, http, grpc, ready)
    logs = scratch / "logging.json"
    logs.write_text(json.dumps(QUIET_LOGS))
    if name == "kserve":
        args = [
            *("--model_name", MODEL, "--model_path", str(model)),
            *("--http_port", str(http), "--grpc_port", str(grpc)),
            *("--enable_latency_logging", "false", "--log_config_file", str(logs)),
        ]
        return Server(
            name,
            [str(bins[name] / "python"), str(RUNTIMES / "kserve_onnx.py"), *args],
            env,
            http,
            grpc,
            ready,
        )
    repo = scratch / f"mlserver-{http}"
    (repo / MODEL).mkdir(parents=True)
    settings = {
        "host": "127.0.0.1",
        "http_port": http,
        "grpc_port": grpc,
        "metrics_port": free_port(),
        "parallel_workers": 0,  # in-process inference, as the measurements
        "debug": False,
        "logging_settings": str(logs),
    }
    (repo / "settings.json").write_text(json.dumps(settings))
    model_settings = {
        "name": MODEL,
        "implementation": "mlserver_onnx.OnnxRuntime",
        "parameters": {"uri": str(model)},
    }
    (repo / MODEL / "model-settings.json").write_text(json.dumps(model_settings))
    return Server(name, [str(bins[name] / "mlserver"), "start", str(repo)], env, http, grpc, ready)


def process_tree_rss_mib(pid: int) -> float:
    """RSS of `pid` and its descendants (a server's workers count), MiB."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        todo += children.get(p, [])
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total / 1024


@contextlib.contextmanager
def running(server: Server) -> Iterator[tuple[subprocess.Popen, float]]:
    """Start `server`; yields (process, seconds from spawn to its model's ready route answering 200)."""
    url = f"http://127.0.0.1:{server.http}{server.ready_path}"
    start = time.perf_counter()
    with httpx.Client() as client:
        proc = spawn(
            server.command,
            lambda: answers(url, client=client),
            server.name,
            timeout=120,
            poll=0.01,  # time to ready is measured: poll often
            cwd=Path(tempfile.gettempdir()),
            env=server.env,
        )
    try:
        yield proc, time.perf_counter() - start
    finally:
        stop_server(proc)


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


def measure(server: Server, seconds: int, bodies: tuple[bytes, bytes, int], script: Path) -> dict:
    with running(server) as (proc, ready_s):
        infer = f"http://127.0.0.1:{server.http}/v2/models/{MODEL}/infer"
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
        row["rss_mib"] = process_tree_rss_mib(proc.pid)
    return row


def judge(medians: dict[str, dict]) -> dict[str, dict]:
    """Each target: ours, the best peer's figure, the ratio, met or not."""
    ours, peers = medians["ours"], {k: v for k, v in medians.items() if k != "ours"}
    out = {}
    for key, text in TARGETS.items():
        values = {k: v[key] for k, v in peers.items() if v.get(key) is not None}
        mine = ours.get(key)
        if key == "ready_s":
            out[key] = {"ours": mine, "target": text, "met": mine is not None and mine <= 0.5}
            continue
        if mine is None or not values:
            out[key] = {"ours": mine, "target": text, "met": False}
            continue
        higher_better = key.endswith("rps")
        best = max(values.values()) if higher_better else min(values.values())
        ratio = mine / best if higher_better else best / mine
        need = {"binary_100k_ms": 10.0}.get(key, 2.0 if higher_better else 1.0)
        out[key] = {"ours": mine, "best_peer": best, "ratio": ratio, "target": text, "met": ratio >= need}
    return out


def run(
    reps: int = 3, seconds: float = 3.0, artifacts: Path | None = None, cache: Path | None = None
) -> dict:
    cache = cache or Path.home() / ".cache" / "oneneuron-peers"
    bins = {name: ensure_peer(cache, name) for name in PEERS}
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        model = _artifacts(artifacts, scratch / "artifacts") / f"{MODEL}.onnx"
        script = scratch / "infer.lua"
        script.write_text(LUA)
        n_features = 1
        bodies = big_requests(n_features)
        names = ["ours", *PEERS]
        samples: dict[str, list[dict]] = {n: [] for n in names}
        ceiling: list[dict] = []
        for rep in range(reps):
            order = names[rep % len(names) :] + names[: rep % len(names)]  # rotate who goes first
            for name in order:
                logger.info("repetition %d/%d: %s", rep + 1, reps, name)
                row = measure(command(name, bins, model, scratch), seconds, bodies, script)
                samples[name].append(row)
            ceiling.append(grpc_ceiling(seconds))
    medians = {
        name: {
            key: (statistics.median(vals) if (vals := [r[key] for r in rows if r[key] is not None]) else None)
            for key in rows[0]
        }
        for name, rows in samples.items()
    }
    return {
        "versions": {"ours": "python -m serve", **{k: v[0] for k, v in PEERS.items()}, "onnxruntime": ORT},
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "settings": {"repetitions": reps, "seconds": seconds, "rows": ROWS},
        "medians": medians,
        "samples": samples,
        "targets": judge(medians),
        "grpc_client_ceiling": {
            key: statistics.median(r[key] for r in ceiling) for key in ("grpc_rps", "grpc_c16_rps")
        }
        | {"samples": ceiling},
    }


def grpc_ceiling(seconds: float) -> dict[str, float]:
    """The same gRPC measurements against bench/grpc_ceiling.py, which answers without any work:
    how many requests the client itself can send here."""
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
        return {"grpc_rps": grpc_rps(port, seconds), "grpc_c16_rps": grpc_rps(port, seconds, 16)}
    finally:
        stop_server(proc)


def format_table(result: dict) -> str:
    m = result["medians"]
    names = list(m)
    labels = ["ours"] + [PEERS[n][0] for n in names[1:]]
    rows = [
        ("V2 JSON batch 1, c=1 req/s", "http_c1_rps", "{:,.0f}"),
        ("V2 JSON batch 1, c=16 req/s", "http_c16_rps", "{:,.0f}"),
        ("gRPC batch 1 (tritonclient), c=1 req/s", "grpc_rps", "{:,.0f}"),
        ("gRPC batch 1 (tritonclient), c=16 req/s", "grpc_c16_rps", "{:,.0f}"),
        ("100k-row request, JSON ms", "json_100k_ms", "{:,.1f}"),
        ("100k-row request, binary ms", "binary_100k_ms", "{:,.1f}"),
        ("RSS MiB", "rss_mib", "{:,.0f}"),
        ("time to ready s", "ready_s", "{:.2f}"),
    ]
    lines = ["| | " + " | ".join(labels) + " | target |", "|---" * (len(labels) + 2) + "|"]
    for title, key, fmt in rows:
        cells = ["n/a" if m[n][key] is None else fmt.format(m[n][key]) for n in names]
        t = result["targets"][key]
        ratio = f" ({t['ratio']:.2f}x)" if t.get("ratio") else ""
        lines.append(f"| {title} | " + " | ".join(cells) + f" | {'met' if t['met'] else 'MISSED'}{ratio} |")
    ceiling = result["grpc_client_ceiling"]
    lines.append(
        f"\ngRPC client ceiling (bench/grpc_ceiling.py, a servicer that answers without any work, same "
        f"client): c=1 {ceiling['grpc_rps']:,.0f} req/s, c=16 {ceiling['grpc_c16_rps']:,.0f} req/s"
    )
    return "\n".join(lines)


def main() -> None:
    from oneneuron import cli

    p = cli.parser(
        "Benchmark python -m serve against KServe and MLServer on the same ONNX model.",
        "python -m bench.peers --reps 3",
        command="bench.peers",
    )
    p.add_argument("--reps", type=cli.positive_int, default=3, help="fresh servers per repetition")
    p.add_argument(
        "--seconds", type=cli.positive_int, default=3, help="each wrk and gRPC run (whole seconds)"
    )
    p.add_argument("--artifacts", type=Path, default=None, help="exported artifacts (default: artifacts/)")
    p.add_argument("--cache", type=Path, default=None, help="where the peers' venvs live")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "peers.json")

    def _main(args) -> int:
        result = run(args.reps, args.seconds, args.artifacts, args.cache)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        print(format_table(result))
        print(f"wrote {args.out}")
        return 0

    cli.run(_main, p.parse_args())


if __name__ == "__main__":
    main()
