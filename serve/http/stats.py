"""Per-version inference statistics in Triton's shape (`GET /v2/models/{m}[/versions/{v}]/stats`,
gRPC `ModelStatistics`), counted by the HTTP (V2, TF Serving) and gRPC infer paths alike.

Counts are plain Python numbers updated on the event loop (no lock: one loop thread writes them).
Triton's fields we cannot measure separately (queue, compute input/output) are reported as zero;
`compute_infer` is the whole request's time in the handler, as `success` is.
"""

from __future__ import annotations

import time
from typing import Any

OK_COUNT, OK_NS, FAIL_COUNT, FAIL_NS, ROWS, LAST_MS = range(6)


class Stats:
    """(model, version label) -> [ok count, ok ns, fail count, fail ns, rows inferred, last ms]."""

    def __init__(self) -> None:
        self.counts: dict[tuple[str, str], list[int]] = {}

    def ok(self, model: str, version: str, rows: int, ns: int) -> None:
        s = self.counts.get((model, version))
        if s is None:
            s = self.counts[(model, version)] = [0] * 6
        s[OK_COUNT] += 1
        s[OK_NS] += ns
        s[ROWS] += rows
        s[LAST_MS] = int(time.time() * 1000)

    def fail(self, model: str, version: str, ns: int) -> None:
        s = self.counts.setdefault((model, version), [0] * 6)
        s[FAIL_COUNT] += 1
        s[FAIL_NS] += ns

    def get(self, model: str, version: str) -> list[int]:
        return self.counts.get((model, version), [0] * 6)

    def triton(self, model: str, version: str) -> dict[str, Any]:
        """One entry of Triton's `model_stats` list (HTTP JSON shape)."""
        s = self.get(model, version)

        def duration(count: int, ns: int) -> dict[str, int]:
            return {"count": count, "ns": ns}

        zero = duration(0, 0)
        return {
            "name": model,
            "version": version,
            "last_inference": s[LAST_MS],
            "inference_count": s[ROWS],
            "execution_count": s[OK_COUNT],
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
            "batch_stats": [],
        }
