"""Per-version inference statistics in Triton's shape (`GET /v2/models/{m}[/versions/{v}]/stats`,
gRPC `ModelStatistics`), counted by the HTTP (V2, TF Serving) and gRPC infer paths alike.

Each loaded version carries its own counters (and `batch_stats`: rows per model run, counted by
serve/engine/scheduler.py) (`Version.counts`, a list: no dict lookup and no
lock on the request path; one event-loop thread writes them), so a reload that keeps a version
keeps its counts, and an unloaded version's counts go with it, as in Triton. Triton's fields we
do not measure separately (queue, compute input/output, cache) are zero; `compute_infer` is the
request's time in the handler, as `success` is.
"""

from __future__ import annotations

import time
from typing import Any

OK_COUNT, OK_NS, FAIL_COUNT, FAIL_NS, ROWS, LAST_NS = range(6)
_EPOCH_NS = time.time_ns() - time.perf_counter_ns()  # perf_counter_ns -> Unix time, at read


def new_counts() -> list[int]:
    return [0] * 6


def ok(counts: list[int], rows: int, start_ns: int) -> None:
    """One successful request of `rows` rows that started at perf_counter_ns() == `start_ns`."""
    now = time.perf_counter_ns()
    counts[OK_COUNT] += 1
    counts[OK_NS] += now - start_ns
    counts[ROWS] += rows
    counts[LAST_NS] = now


def fail(counts: list[int], start_ns: int) -> None:
    counts[FAIL_COUNT] += 1
    counts[FAIL_NS] += time.perf_counter_ns() - start_ns


def triton(model: str, version: str, counts: list[int], batches: dict[int, list[int]]) -> dict[str, Any]:
    """One entry of Triton's `model_stats` list (HTTP JSON shape). `batches`: rows per model run ->
    [runs, ns] (serve/engine/scheduler.py): `batch_stats` and `execution_count` (model runs; with
    dynamic batching fewer than the requests)."""
    s = counts

    def duration(count: int, ns: int) -> dict[str, int]:
        return {"count": count, "ns": ns}

    zero = duration(0, 0)
    return {
        "name": model,
        "version": version,
        "last_inference": (s[LAST_NS] + _EPOCH_NS) // 1_000_000 if s[LAST_NS] else 0,
        "inference_count": s[ROWS],
        "execution_count": sum(n for n, _ in batches.values()),
        "inference_stats": {
            "success": duration(s[OK_COUNT], s[OK_NS]),
            "fail": duration(s[FAIL_COUNT], s[FAIL_NS]),
            "queue": zero,
            "compute_input": zero,
            "compute_infer": duration(s[OK_COUNT], s[OK_NS]),
            "compute_output": zero,
            "cache_hit": zero,
            "cache_miss": zero,
        },
        "batch_stats": [
            {
                "batch_size": size,
                "compute_input": zero,
                "compute_infer": duration(n, ns),
                "compute_output": zero,
            }
            for size, (n, ns) in sorted(batches.items())
        ],
    }
