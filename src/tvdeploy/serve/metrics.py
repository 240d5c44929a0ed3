"""Prometheus metrics of ``tvdeploy serve`` (served at ``/metrics`` beside KServe's own)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

REQUESTS = Counter(
    "tvdeploy_requests_total", "HTTP requests by route kind and status code", ["route", "method", "status"]
)
REQUEST_LATENCY = Histogram(
    "tvdeploy_request_duration_seconds",
    "HTTP request latency",
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
