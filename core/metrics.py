"""Prometheus metrics the engine records; `hearth serve` exposes them at /metrics."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

QUEUE_DEPTH = Gauge("hearth_local_queue_depth", "Requests waiting for the local model.")
QUEUE_WAIT = Histogram(
    "hearth_local_queue_wait_seconds",
    "Time a request waited for the local model.",
    buckets=(0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 30, 60, 120),
)
FALLBACKS = Counter(
    "hearth_fallbacks_total", "Requests the router sent past a backend.", ["backend", "reason"]
)
TOKENS = Counter("hearth_completion_tokens_total", "Completion tokens generated.", ["backend"])
GENERATION_SECONDS = Histogram(
    "hearth_generation_seconds",
    "Wall time of one generation.",
    ["backend"],
    buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60, 120),
)
FIRST_TOKEN_SECONDS = Histogram(
    "hearth_first_token_seconds",
    "Time to first token.",
    ["backend"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
)
ERRORS = Counter("hearth_errors_total", "Errors by kind and surface.", ["kind", "surface"])
ENGINE_RESTARTS = Counter(
    "hearth_engine_restarts_total", "Restarts of the local llama-server engine after a crash or a hang."
)
