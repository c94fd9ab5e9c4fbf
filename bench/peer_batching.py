"""Real-cost models on every server, with and without batching (bench/peers.py's second table).

The wide MLP and the CNN (bench/peer_models.py), V2 JSON batch 1 with wrk at c=1, 16 and 64, on:
ours without batching, ours with the engine's dynamic batching (`OURS_BATCHING`, the same bounds
as MLServer's: up to 64 rows, 2 ms), MLServer 1.7.1 with adaptive batching (`max_batch_size` 64,
`max_batch_time` 2 ms) and without, and KServe 0.21 (no batching in its model server), all on
the same ONNX file, fresh servers per repetition in a rotating order. While the CNN runs at c=64,
a second client asks /v2/health/ready every 10 ms and records each answer's latency (p99).
With batching, ours' statistics (Triton's `batch_stats`) give the batch size the batcher formed;
the bare onnxruntime rows/s at that batch size (one intra-op thread) are reported beside.
Without the engine's flags in `python -m serve --help`, ours' batching rows are "not available".
"""

from __future__ import annotations

import logging
import re
import statistics
import subprocess
import threading
import time
from pathlib import Path

import httpx
import numpy as np

from bench import peer_models
from bench.peer_servers import Served, Server, command, running
from bench.peer_table import HEALTH_AT
from bench.serving import UNITS

logger = logging.getLogger(__name__)

CONNECTIONS = (1, 16, 64)
OURS_BATCHING = ["--max-batch-size", "64", "--max-queue-delay-us", "2000"]
MLSERVER_BATCHING = {"max_batch_size": 64, "max_batch_time": 0.002}
CONFIGS = {  # column -> (server, options)
    "ours": ("ours", []),
    "ours_batching": ("ours", OURS_BATCHING),
    "mlserver_batching": ("mlserver", MLSERVER_BATCHING),
    "mlserver": ("mlserver", {}),
    "kserve": ("kserve", None),
}
LABELS = {
    "ours": "ours",
    "ours_batching": "ours, batching",
    "mlserver_batching": "MLServer 1.7.1, adaptive batching",
    "mlserver": "MLServer 1.7.1",
    "kserve": "KServe 0.21.0",
}
PEER_COLUMNS = ("mlserver_batching", "mlserver", "kserve")
HEALTH_EVERY_S = 0.01


def lua(body_file: Path) -> str:
    """A wrk script POSTing the JSON in `body_file` (read once; a CNN row is ~200 KB of JSON)."""
    return f"""wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = io.open("{body_file}", "rb")
wrk.body = f:read("*a")
f:close()
"""


def wrk_2xx(url: str, connections: int, seconds: float, script: Path) -> dict:
    """One wrk run: 2xx answers per second (a peer's errors under load are counted, not fatal),
    p50 and p99 ms, and the errors seen."""
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 60,
    ).stdout
    done = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m),", out)
    if done is None:
        raise RuntimeError(f"wrk's output not understood:\n{out}")
    duration_s = float(done.group(2)) * {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[done.group(3)]
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    bad = int(non_2xx.group(1)) if non_2xx else 0
    pct = {
        p: float(v) * UNITS[u] for p, v, u in re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
    }
    socket = re.search(r"Socket errors: (.*)", out)
    return {
        "rps": (int(done.group(1)) - bad) / duration_s,
        "p50_ms": pct.get("50"),
        "p99_ms": pct.get("99"),
        "errors": (f"{bad} non-2xx; " if bad else "") + (socket.group(1) if socket else ""),
    }


class HealthProbe:
    """A second client asking `url` every `HEALTH_EVERY_S` s in a thread: latencies in ms."""

    def __init__(self, url: str):
        self.url, self.latencies, self.failures = url, [], 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        with httpx.Client(timeout=10) as client:
            while not self._stop.is_set():
                start = time.perf_counter()
                try:
                    ok = client.get(self.url).status_code == 200
                except httpx.HTTPError:
                    ok = False
                if ok:
                    self.latencies.append((time.perf_counter() - start) * 1e3)
                else:
                    self.failures += 1
                self._stop.wait(HEALTH_EVERY_S)

    def __enter__(self) -> HealthProbe:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def summary(self) -> dict:
        lat = self.latencies
        return {
            "health_p99_ms": float(np.percentile(lat, 99)) if lat else None,
            "health_p50_ms": float(np.percentile(lat, 50)) if lat else None,
            "health_probes": len(lat),
            "health_failures": self.failures,
        }


def formed_batch(before: dict, after: dict) -> float | None:
    """Mean rows per onnxruntime call between two of ours' statistics (`batch_stats`: Triton's
    per-batch-size execution counts; without them, inference_count / execution_count)."""

    def per_size(stats: dict) -> dict[int, int]:
        return {int(b["batch_size"]): int(b["compute_infer"]["count"]) for b in stats.get("batch_stats", [])}

    a, b = per_size(after), per_size(before)
    calls = {size: n - b.get(size, 0) for size, n in a.items()}
    if sum(calls.values()) > 0:
        return sum(size * n for size, n in calls.items()) / sum(calls.values())
    executions = after["execution_count"] - before["execution_count"]
    return (after["inference_count"] - before["inference_count"]) / executions if executions > 0 else None


def measure(server: Server, seconds: float, script: Path, model: str) -> dict:
    """One fresh server: wrk at each concurrency (ours with batching: the batch it formed)."""
    row: dict = {}
    with running(server):
        base = f"http://127.0.0.1:{server.http}"
        url = f"{base}/v2/models/{server.model}/infer"
        wrk_2xx(url, 4, 1, script)  # warm-up
        for c in CONNECTIONS:
            before = server.stats() if server.name == "ours" else None
            if (model, c) == HEALTH_AT:
                with HealthProbe(f"{base}/v2/health/ready") as probe:
                    got = wrk_2xx(url, c, seconds, script)
                got |= probe.summary()
            else:
                got = wrk_2xx(url, c, seconds, script)
            if before is not None:
                got["batch"] = formed_batch(before, server.stats())
            row[c] = got
    return row


def run(
    bins: dict[str, Path], cache: Path, scratch: Path, reps: int, seconds: float, flags: set[str]
) -> dict:
    """Both models on every configuration: per-repetition samples, medians, and the bare
    onnxruntime rows/s at the batch sizes ours formed."""
    batching = {"--max-batch-size", "--max-queue-delay-us"} <= flags
    columns = [c for c in CONFIGS if batching or c != "ours_batching"]
    result: dict = {"available": {c: c in columns for c in CONFIGS}, "models": {}}
    for name in peer_models.BUILDERS:
        model = peer_models.build(cache, name)
        served = Served(model.name, model.onnx, model.artifacts)
        body = scratch / f"{name}.json"
        body.write_text(model.v2_json())
        script = scratch / f"{name}.lua"
        script.write_text(lua(body))
        samples: dict[str, list[dict]] = {c: [] for c in columns}
        for rep in range(reps):
            for column in columns[rep % len(columns) :] + columns[: rep % len(columns)]:
                logger.info("%s, repetition %d/%d: %s", name, rep + 1, reps, column)
                server_name, options = CONFIGS[column]
                server = command(server_name, bins, served, scratch, options)
                try:
                    samples[column].append(measure(server, seconds, script, name))
                except (RuntimeError, httpx.HTTPError, subprocess.SubprocessError) as exc:
                    # a server that does not start, or breaks under load, is a result, not the end
                    logger.warning("%s on %s: %s", column, name, str(exc)[:500])
                    samples[column].append({c: {"rps": None, "errors": str(exc)[:500]} for c in CONNECTIONS})
        medians = {column: _medians(rows) for column, rows in samples.items()}
        bare = {}
        for c, got in medians.get("ours_batching", {}).items():
            if got.get("batch"):
                size = max(1, round(got["batch"]))
                bare[c] = {"batch": size, "rows_per_s": peer_models.bare_rows_per_s(model, size)}
        bare["batch_1"] = {"batch": 1, "rows_per_s": peer_models.bare_rows_per_s(model, 1)}
        result["models"][name] = {"medians": medians, "samples": samples, "bare": bare}
    return result


def _medians(rows: list[dict]) -> dict:
    out: dict = {}
    for c in rows[0]:
        keys = sorted({k for r in rows for k in r[c] if k != "errors"})
        out[c] = {
            k: statistics.median(v) if (v := [r[c][k] for r in rows if r[c].get(k) is not None]) else None
            for k in keys
        }
        out[c]["errors"] = [r[c]["errors"] for r in rows if r[c]["errors"]]
    return out
