"""`ServeConfig`: everything `python -m serve` is told, as one frozen object."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from serve.engine.scheduler import Limits

MiB = 1 << 20
MODEL_CONTROL = ("poll", "explicit", "none")


@dataclass(frozen=True)
class ServeConfig:
    """One server run; `python -m serve --help` shows the same defaults."""

    artifacts: Path = Path("artifacts")  # directory holding manifest.json and the .onnx files
    host: str = "127.0.0.1"  # loopback unless asked; 0.0.0.0 binds every interface
    port: int = 8000
    max_body_bytes: int = 4 * MiB  # larger request bodies get 413
    max_rows: int | None = None  # more rows in one request get 413; None: derived, see row_limit
    body_timeout: float = 10.0  # seconds to receive a whole request body; a stalled client gets 408
    header_timeout: float = 10.0  # seconds to receive a request's headers; then the connection closes
    max_header_bytes: int = 64 * 1024  # a larger request head (line + headers) gets 431
    grpc_port: int = 8001  # KServe V2 / Triton gRPC on the same host; 0 disables it
    grpc_idle_seconds: float = 60.0  # a gRPC connection with no call for this long is closed
    grpc_max_connections: int = 512  # further gRPC connections are refused (under the file limit)
    threads: int = 1  # onnxruntime intra-op threads per model; 1 is fastest for small batches
    # scheduling per model (serve/engine/scheduler.py); None: from triton/<model>/config.pbtxt, else off/1
    instances: int | None = None  # worker threads running the model (Triton's instance_group)
    max_queue: int = 256  # requests queued per model beyond those running; more get 503 + Retry-After
    max_batch_size: int | None = None  # dynamic batching: rows per merged run (0 or 1: off)
    max_queue_delay_us: int | None = None  # dynamic batching: longest wait to fill a batch
    preferred_batch_sizes: tuple[int, ...] | None = None  # dynamic batching: sizes worth waiting for
    access_log: bool = False  # uvicorn's per-request log line (costs ~5% throughput)
    trust_key: Path | None = None  # PEM public key: serve only models whose signature it verifies
    min_generation: int | None = None  # refuse a manifest of a lower generation (a rolled-back one)
    model_control: str = "poll"  # poll: watch the manifest; explicit: repository load/unload; none
    poll_seconds: float = 2.0  # poll mode: how often the manifest's commit point is checked

    @property
    def row_limit(self) -> int:
        """`max_rows`, or by default what the body limit allows: a row takes at least one byte
        (one UINT8 feature in binary), so the body limit already bounds the rows; a request as
        large as --max-body-bytes allows (1M FP32 rows in 4 MiB) is never refused for its rows."""
        return self.max_rows if self.max_rows is not None else self.max_body_bytes

    @property
    def limits(self) -> Limits:
        return Limits(
            self.instances,
            self.max_queue,
            self.max_batch_size,
            self.max_queue_delay_us,
            self.preferred_batch_sizes,
        )

    def describe(self) -> dict[str, Any]:
        """The resolved config as JSON-able values, printed at start."""
        out = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(self).items()}
        out["max_rows"] = self.row_limit
        return out
