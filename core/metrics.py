"""Every Prometheus metric Hearth records, in one module; `hearth serve` exposes them at /metrics.

The intake's observer that fills :data:`ANSWERS` and :data:`ERRORS` is
``core.intake_metrics.METRICS``: it reads the intake's outcomes, which this module (used by the
model backends far below the intake) does not know.
"""

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
SLOW_CLIENTS = Counter(
    "hearth_slow_client_disconnects_total",
    "Connections `hearth serve` closed to protect itself: a body past its deadline, evicted at the "
    "connection cap, or refused at the cap.",
    ["reason"],
)
LOG_SUPPRESSED = Counter(
    "hearth_log_records_suppressed_total",
    "Log records dropped by the repeated-message rate limit.",
    ["level"],
)

# Every question from every surface (Socket Mode and Stream mode never touch HTTP).
ANSWERS = Counter(
    "hearth_answers_total",
    "Answered requests by surface, action and outcome.",
    ["surface", "action", "status"],
)
ANSWER_SECONDS = Histogram(
    "hearth_answer_seconds",
    "Time to a complete answer by surface and action.",
    ["surface", "action"],
    buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120),
)

# 👍/👎 on answers (`hearth feedback` lists and exports the votes themselves).
FEEDBACK_VOTES = Counter(
    "hearth_feedback_votes_total", "Votes people gave answers, by surface and vote.", ["surface", "vote"]
)

# The REST API, Slack's and DingTalk's HTTP callbacks (recorded by server.observability's middleware).
HTTP_REQUESTS = Counter(
    "hearth_http_requests_total",
    "HTTP requests by route, surface and status.",
    ["route", "surface", "status"],
)
HTTP_LATENCY = Histogram(
    "hearth_http_request_seconds",
    "HTTP request latency by route and surface (streams: until the last byte).",
    ["route", "surface"],
    buckets=(0.005, 0.025, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120),
)
