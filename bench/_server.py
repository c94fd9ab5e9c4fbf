"""Servers for benchmarks and tests: a free loopback port, `python -m serve` started and stopped.

One place for what the soak, serving, gRPC and peer benchmarks and the process tests share.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn(
    command: list[str],
    ready: Callable[[], bool],
    what: str,
    timeout: float = 60,
    poll: float = 0.1,
    cwd: Path = ROOT,
    env: dict[str, str] | None = None,
) -> subprocess.Popen:
    """Start `command` and return it once `ready()` is true (`ready` swallows its own connection
    errors). If it exits first, or is not ready within `timeout` s, it is stopped and a
    RuntimeError names `what` (with the end of its stderr when it exited)."""
    proc = subprocess.Popen(
        command,
        cwd=cwd,
        env=env if env is not None else {**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}: {proc.stderr.read()[-2000:]}")
        if ready():
            return proc
        if time.monotonic() > deadline:
            stop_server(proc)
            raise RuntimeError(f"{what} not ready within {timeout} s")
        time.sleep(poll)


def answers(url: str, body: str | None = None, client: httpx.Client | None = None) -> bool:
    """Whether `url` answers 200 (GET, or POST of `body`); False while nothing listens there."""
    try:
        http = client or httpx
        r = http.get(url, timeout=1) if body is None else http.post(url, content=body, timeout=1)
    except httpx.TransportError:
        return False
    return r.status_code == 200


def start_server(artifacts: Path, *args: str, timeout: float = 60) -> tuple[subprocess.Popen, int]:
    """`python -m serve` on a free loopback port, once /v2/health/ready answers 200.
    gRPC is off unless `args` give --grpc-port (its default port may be taken by another server)."""
    port = free_port()
    if "--grpc-port" not in args:
        args = (*args, "--grpc-port", "0")
    command = [sys.executable, "-m", "serve", "--artifacts", str(artifacts), "--port", str(port), *args]
    url = f"http://127.0.0.1:{port}/v2/health/ready"
    return spawn(command, lambda: answers(url), "server", timeout), port


def stop_server(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def stop_all(procs: list[subprocess.Popen], timeout: float = 15) -> None:
    """SIGTERM every process (last started first), then wait; kill what does not exit in `timeout`."""
    for proc in reversed(procs):
        if proc.poll() is None:
            proc.terminate()
    for proc in reversed(procs):
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
