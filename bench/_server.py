"""Servers for benchmarks and tests: a free loopback port, `python -m serve` started and stopped.

One place for what the soak, serving, gRPC and peer benchmarks and the process tests share.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(artifacts: Path, *args: str, timeout: float = 60) -> tuple[subprocess.Popen, int]:
    """`python -m serve` on a free loopback port, once /v2/health/ready answers 200.
    gRPC is off unless `args` give --grpc-port (its default port may be taken by another server)."""
    port = free_port()
    if "--grpc-port" not in args:
        args = (*args, "--grpc-port", "0")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "serve", "--artifacts", str(artifacts), "--port", str(port), *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}: {proc.stderr.read()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v2/health/ready", timeout=1).status_code == 200:
                return proc, port
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            stop_server(proc)
            raise RuntimeError(f"server not ready within {timeout} s")
        time.sleep(0.1)


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
