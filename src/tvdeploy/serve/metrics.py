"""Prometheus metrics of ``tvdeploy serve`` (served at ``/metrics`` beside KServe's own), and the access log."""

from __future__ import annotations

import logging

from prometheus_client import Counter, Gauge, Histogram

from tvdeploy.text import printable

access_logger = logging.getLogger("tvdeploy.serve.access")

REQUESTS = Counter(
    "tvdeploy_requests_total", "HTTP and gRPC requests by route kind, method and status", ["route", "method", "status"]
)
REQUEST_LATENCY = Histogram(
    "tvdeploy_request_duration_seconds",
    "Request latency (HTTP and gRPC)",
    ["route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
BATCH_SIZE = Histogram(
    "tvdeploy_batch_size", "Rows per model call (dynamic batching)", ["model"], buckets=(1, 2, 4, 8, 16, 32, 64, 128)
)
QUEUE_DEPTH = Gauge("tvdeploy_queue_depth", "Rows waiting for a model call", ["model"])
INFERENCE_ERRORS = Counter(
    "tvdeploy_inference_errors_total", "Requests refused or failed, by reason", ["model", "reason"]
)


def record_request(kind: str, method: str, status: str, seconds: float, client: str, target: str) -> None:
    """Count one finished request (HTTP or gRPC), observe its latency and write its access log line (the client's
    path with control characters escaped: a ``%0a`` in a path cannot forge a line)."""
    REQUESTS.labels(kind, method, status).inc()
    REQUEST_LATENCY.labels(kind).observe(seconds)
    access_logger.info(
        '%s "%s %s" %s %.1fms', client, printable(method), printable(target, 2000), status, seconds * 1000
    )
