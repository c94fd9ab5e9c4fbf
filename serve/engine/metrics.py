"""Prometheus metrics for `GET /metrics`: requests, latency, rows inferred, model load results.

Each app gets its own `CollectorRegistry`, so tests can build many apps in one process.
Per-request counts are plain Python numbers updated on the event loop and turned into
Prometheus families only when scraped (a custom collector): prometheus-client's own Counter
and Histogram take a lock per update, which costs ~2 µs of a ~150 µs request.
"""

from __future__ import annotations

import contextlib
from bisect import bisect_left
from collections.abc import Iterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric

# Sub-millisecond buckets: a batch-1 request takes ~0.2 ms on loopback.
LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 2.5)


class _RequestCollector:
    """Requests by (route, method, status), latency by route, rows by (model, protocol)."""

    def __init__(self) -> None:
        self.requests: dict[tuple[str, str, str], int] = {}
        self.latency: dict[str, list] = {}  # route -> [bucket counts..., +Inf count, sum]
        self.rows: dict[tuple[str, str], int] = {}

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "serve_requests",
            "HTTP requests by route template, method and status",
            labels=["route", "method", "status"],
        )
        for labels, n in list(self.requests.items()):
            requests.add_metric(list(labels), n)
        latency = HistogramMetricFamily(
            "serve_request_duration_seconds", "Time in the route handler, by route", labels=["route"]
        )
        for route, counts in list(self.latency.items()):
            cumulative, buckets = 0, []
            for bound, n in zip((*map(str, LATENCY_BUCKETS), "+Inf"), counts[:-1], strict=False):
                cumulative += n
                buckets.append((bound, cumulative))
            latency.add_metric([route], buckets, counts[-1])
        rows = CounterMetricFamily(
            "serve_rows_inferred", "Rows inferred, by model and protocol", labels=["model", "protocol"]
        )
        for labels, n in list(self.rows.items()):
            rows.add_metric(list(labels), n)
        yield from (requests, latency, rows)


class Metrics:
    """The server's metrics, in a private registry."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self._c = _RequestCollector()
        r.register(self._c)
        self.model_loaded = Gauge(
            "serve_model_loaded",
            "1 once the model loaded, matched its sha256 and passed its self-test; "
            "0 while loading or after a failure",
            ["model"],
            registry=r,
        )
        self.model_load_failed = Gauge(
            "serve_model_load_failed", "1 when loading or the self-test failed", ["model"], registry=r
        )
        self.selftest_error = Gauge(
            "serve_model_selftest_abs_error",
            "|prediction - stored prediction| at the self-test input",
            ["model"],
            registry=r,
        )
        self.load_seconds = Gauge(
            "serve_model_load_seconds", "Time to verify, load and self-test the model", ["model"], registry=r
        )
        self.ready = Gauge("serve_ready", "1 when every model is loaded and passed its self-test", registry=r)
        self.default_version = Gauge(
            "serve_model_default_version",
            "The version routes without /versions/{v} serve (the newest that passed its checks); 0: none",
            ["model"],
            registry=r,
        )
        self.version_loaded = Gauge(
            "serve_model_version_loaded",
            "1 when this stored version (sha256) loaded and passed its checks, 0 while loading or failed",
            ["model", "version", "sha256"],
            registry=r,
        )
        self.version_failed = Gauge(
            "serve_model_version_failed",
            "1 when this stored version failed its sha256, signature, load or self-test (never served)",
            ["model", "version", "sha256"],
            registry=r,
        )
        self.version_failures = Counter(
            "serve_model_version_load_failures",
            "Version loads that failed (counted again when a manifest change retries one)",
            ["model"],
            registry=r,
        )
        self.reloads = Counter(
            "serve_manifest_reloads",
            "Manifest re-reads (poll or explicit load), by result: ok, failed (unreadable manifest), "
            "refused (a lower generation than one already served: a rolled-back directory)",
            ["result"],
            registry=r,
        )
        self.generation = Gauge(
            "serve_manifest_generation",
            "The highest manifest generation this server has accepted (or --min-generation); a manifest "
            "below it is refused",
            registry=r,
        )
        self.refused_generation = Gauge(
            "serve_manifest_refused_generation",
            "The generation of the manifest refused as rolled back, while it is in place; 0: none",
            registry=r,
        )

    def version_state(self, model: str, version: str, sha256: str, state: str) -> None:
        self.version_loaded.labels(model, version, sha256).set(1 if state == "READY" else 0)
        self.version_failed.labels(model, version, sha256).set(1 if state == "FAILED" else 0)

    def forget_version(self, model: str, version: str, sha256: str) -> None:
        """A version no longer served: its series leave /metrics."""
        for gauge in (self.version_loaded, self.version_failed):
            with contextlib.suppress(KeyError):
                gauge.remove(model, version, sha256)

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count one request and record its latency."""
        c = self._c
        key = (route, method, str(status))
        c.requests[key] = c.requests.get(key, 0) + 1
        counts = c.latency.get(route)
        if counts is None:
            counts = c.latency[route] = [0] * (len(LATENCY_BUCKETS) + 2)
        counts[bisect_left(LATENCY_BUCKETS, seconds)] += 1  # le buckets: bound >= seconds
        counts[-1] += seconds

    def rows(self, model: str, protocol: str, n: int) -> None:
        key = (model, protocol)
        self._c.rows[key] = self._c.rows.get(key, 0) + n

    def render(self) -> bytes:
        return generate_latest(self.registry)
