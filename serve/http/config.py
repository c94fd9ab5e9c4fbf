"""`ServeConfig`: everything `python -m serve` is told, as one frozen object."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

MiB = 1 << 20


@dataclass(frozen=True)
class ServeConfig:
    """One server run; `python -m serve --help` shows the same defaults."""

    artifacts: Path = Path("artifacts")  # directory holding manifest.json and the .onnx files
    host: str = "127.0.0.1"  # loopback unless asked; 0.0.0.0 binds every interface
    port: int = 8000
    max_body_bytes: int = 4 * MiB  # larger request bodies get 413
    max_rows: int = 65536  # more rows in one request get 413
    body_timeout: float = 10.0  # seconds to receive a whole request body; a stalled client gets 408
    threads: int = 1  # onnxruntime intra-op threads per model; 1 is fastest for small batches
    access_log: bool = False  # uvicorn's per-request log line (costs ~5% throughput)
    trust_key: Path | None = None  # PEM public key: serve only models whose signature it verifies

    def describe(self) -> dict[str, Any]:
        """The resolved config as JSON-able values, printed at start."""
        return {k: str(v) if isinstance(v, Path) else v for k, v in asdict(self).items()}
