"""The servers bench/peers.py compares, each installed, configured, started and stopped the same way.

KServe 0.21.0's ModelServer and Seldon MLServer 1.7.1 each serve an ONNX file through a small
custom onnxruntime model (bench/peer_runtimes/; one intra-op thread, like ours), installed pinned
in its own virtual environment under the cache (MLServer's worker crashes with uvloop 0.23, so it
gets `uvloop<0.22`); that step needs PyPI once. `python -m serve` serves an artifacts directory.
`Server.successes()` reads each server's own count of successful inferences (what
bench/grpc_h2load.py verifies h2load's answers with).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench import grpc_h2load
from bench._server import answers, free_port, spawn, stop_server

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]
RUNTIMES = ROOT / "bench" / "peer_runtimes"
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


@dataclass(frozen=True)
class Served:
    """What a server serves: `model` (its name everywhere) from `onnx`, inside ours' `artifacts`."""

    model: str
    onnx: Path
    artifacts: Path


@dataclass
class Server:
    name: str  # ours / kserve / mlserver
    model: str
    command: list[str]
    env: dict[str, str]
    http: int
    grpc: int
    metrics: int = 0  # MLServer's separate metrics port
    options: list[str] = field(default_factory=list)  # ours: extra flags (batching)

    @property
    def ready_path(self) -> str:
        return f"/v2/models/{self.model}/ready"

    def successes(self) -> int:
        """The server's own count of successful inferences of the model (REST and gRPC)."""
        if self.name == "ours":
            return grpc_h2load.ours_count(self.http, self.model)
        if self.name == "kserve":
            return grpc_h2load.kserve_count(self.http, self.model)
        return grpc_h2load.mlserver_count(self.metrics, self.model)

    def stats(self) -> dict:
        """Ours: the model's Triton-shaped statistics (the first version's; batch_stats included)."""
        r = httpx.get(f"http://127.0.0.1:{self.http}/v2/models/{self.model}/stats", timeout=10)
        r.raise_for_status()
        return r.json()["model_stats"][0]


def command(
    name: str, bins: dict[str, Path], served: Served, scratch: Path, options: dict | list | None = None
) -> Server:
    """How to start `name` on free ports, serving `served`. `options`: ours, extra flags; MLServer,
    extra model settings (adaptive batching's `max_batch_size` and `max_batch_time`)."""
    http, grpc = free_port(), free_port()
    env = {**os.environ, "PYTHONPATH": str(RUNTIMES)}
    model = served.model
    if name == "ours":
        env["PYTHONPATH"] = str(ROOT)
        flags = list(options or [])
        args = ["--artifacts", str(served.artifacts), "--port", str(http), "--grpc-port", str(grpc), *flags]
        return Server(name, model, [sys.executable, "-m", "serve", *args], env, http, grpc, options=flags)
    logs = scratch / "logging.json"
    logs.write_text(json.dumps(QUIET_LOGS))
    if name == "kserve":
        args = [
            *("--model_name", model, "--model_path", str(served.onnx)),
            *("--http_port", str(http), "--grpc_port", str(grpc)),
            *("--enable_latency_logging", "false", "--log_config_file", str(logs)),
        ]
        runtime = [str(bins[name] / "python"), str(RUNTIMES / "kserve_onnx.py")]
        return Server(name, model, [*runtime, *args], env, http, grpc)
    metrics = free_port()
    repo = scratch / f"mlserver-{http}"
    (repo / model).mkdir(parents=True)
    settings = {
        "host": "127.0.0.1",
        "http_port": http,
        "grpc_port": grpc,
        "metrics_port": metrics,
        "parallel_workers": 0,  # in-process inference, as the measurements
        "debug": False,
        "logging_settings": str(logs),
    }
    (repo / "settings.json").write_text(json.dumps(settings))
    model_settings = {
        "name": model,
        "implementation": "mlserver_onnx.OnnxRuntime",
        "parameters": {"uri": str(served.onnx)},
        **dict(options or {}),
    }
    (repo / model / "model-settings.json").write_text(json.dumps(model_settings))
    return Server(name, model, [str(bins[name] / "mlserver"), "start", str(repo)], env, http, grpc, metrics)


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


def ours_flags() -> set[str]:
    """The flags this `python -m serve` accepts (its `--help`): the batching rows need the engine's
    `--max-batch-size`, and are "not available" without it."""
    out = subprocess.run(
        [sys.executable, "-m", "serve", "--help"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=60,
    ).stdout
    return {word.rstrip(",=") for word in out.split() if word.startswith("--")}
