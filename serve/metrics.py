"""Prometheus metrics for `GET /metrics`: requests, latency, rows inferred, model load results.

Each app gets its own `CollectorRegistry`, so tests can build many apps in one process.
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# Sub-millisecond buckets: a batch-1 request takes ~0.2 ms on loopback.
LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 2.5)


class Metrics:
    """The server's metrics, in a private registry."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self._requests = Counter("serve_requests", "HTTP requests by route template, method and status",
                                 ["route", "method", "status"], registry=r)
        self._latency = Histogram("serve_request_duration_seconds", "Time in the route handler, by route",
                                  ["route"], buckets=LATENCY_BUCKETS, registry=r)
        self._rows = Counter("serve_rows_inferred", "Rows inferred, by model and protocol",
                             ["model", "protocol"], registry=r)
        self.model_loaded = Gauge("serve_model_loaded",
                                  "1 once the model loaded, matched its sha256 and passed its self-test; "
                                  "0 while loading or after a failure", ["model"], registry=r)
        self.model_load_failed = Gauge("serve_model_load_failed", "1 when loading or the self-test failed",
                                       ["model"], registry=r)
        self.selftest_error = Gauge("serve_model_selftest_abs_error",
                                    "|prediction - stored prediction| at the self-test input", ["model"], registry=r)
        self.load_seconds = Gauge("serve_model_load_seconds", "Time to verify, load and self-test the model",
                                  ["model"], registry=r)
        self.ready = Gauge("serve_ready", "1 when every model is loaded and passed its self-test", registry=r)
        self._children: dict[tuple, tuple] = {}

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count one request and record its latency."""
        key = (route, method, status)
        children = self._children.get(key)
        if children is None:  # label lookups take a lock; cache the children per key
            children = self._children[key] = (self._requests.labels(route, method, str(status)),
                                              self._latency.labels(route))
        children[0].inc()
        children[1].observe(seconds)

    def rows(self, model: str, protocol: str, n: int) -> None:
        key = ("rows", model, protocol)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self._rows.labels(model, protocol)
        child.inc(n)

    def render(self) -> bytes:
        return generate_latest(self.registry)
