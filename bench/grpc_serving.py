"""gRPC serving benchmark: `python -m bench.grpc_serving [--quick] [--artifacts DIR]`.

`python -m serve --grpc-port P` driven by `tritonclient.grpc` (one client, one request at a
time, batch 1, FP32 raw contents), side by side with `tritonclient.http` against the same
process's V2 HTTP route (binary tensor data) in the same run: the same client library and
payload over the two protocols. Repetitions alternate the order; medians are reported.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from bench._server import free_port, start_server, stop_server

ROOT = Path(__file__).resolve().parents[1]
MODEL = "keras_linear"


def _rate(client, module, seconds: float) -> float:
    x = np.array([[10.0]], dtype=np.float32)
    inp = module.InferInput("x", [1, 1], "FP32")
    inp.set_data_from_numpy(x)
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        client.infer(MODEL, [inp])
        n += 1
    return n / (time.perf_counter() - start)


def run(quick: bool = False, artifacts: Path | None = None) -> dict:
    """Batch-1 req/s over gRPC and over HTTP, medians of the repetitions."""
    seconds, reps = (1, 2) if quick else (3, 5)
    artifacts = artifacts or ROOT / "artifacts"
    grpc_port = free_port()
    proc, port = start_server(artifacts, "--grpc-port", str(grpc_port))
    try:
        clients = {
            "grpc": (grpcclient.InferenceServerClient(f"127.0.0.1:{grpc_port}"), grpcclient),
            "http": (httpclient.InferenceServerClient(f"127.0.0.1:{port}"), httpclient),
        }
        for client, module in clients.values():
            _rate(client, module, 0.5)  # warm-up
        got: dict[str, list[float]] = {"grpc": [], "http": []}
        for rep in range(reps):
            for who in ["grpc", "http"] if rep % 2 == 0 else ["http", "grpc"]:
                got[who].append(_rate(*clients[who], seconds))
    finally:
        stop_server(proc)
    g, h = statistics.median(got["grpc"]), statistics.median(got["http"])
    return {
        "row": "gRPC batch 1, c=1",
        "subject": "python -m serve gRPC (tritonclient.grpc)",
        "baseline": "the same server's V2 HTTP (tritonclient.http)",
        "metric": "req/s",
        "subject_values": got["grpc"],
        "baseline_values": got["http"],
        "subject_median": g,
        "baseline_median": h,
        "ratio": g / h,
    }


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        epilog="example:\n  python -m bench.grpc_serving --quick",
    )
    p.add_argument("--quick", action="store_true", help="1 s x 2 repetitions instead of 3 s x 5")
    p.add_argument(
        "--artifacts", type=Path, default=None, help="artifacts with manifest.json (default: artifacts/)"
    )
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "grpc_serving.json")
    args = p.parse_args()
    row = run(args.quick, args.artifacts)
    print(
        f"{row['row']}: gRPC {row['subject_median']:.0f} req/s, HTTP {row['baseline_median']:.0f} req/s "
        f"(same client library), ratio {row['ratio']:.2f}"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(row, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
