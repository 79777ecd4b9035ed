"""Request ids, structured JSON logs, per-route Prometheus metrics and error translation.

Every request gets an id (the client's ``X-Request-Id`` when it is sane, else a new one) that is
echoed in the response, put on every log line written while handling it, and stored in the
audit table. Errors become JSON bodies with a sentence and the request id; tracebacks go to the
log only.

The JSON log handler is hardened (:func:`core.logs.harden_logging`): records are redacted and
repeats rate-limited.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import re
import sys
import time
import uuid
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from core import metrics as core_metrics
from core.logs import harden_logging
from core.redact import redact

log = logging.getLogger("hearth.http")

REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("hearth_request_id", default="")
REQUEST_ID_KEY = web.RequestKey("request_id", str)
USER_KEY = web.RequestKey("user", str)
_SAFE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request id and any ``extra`` fields."""

    _STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}

    def format(self, record: logging.LogRecord) -> str:
        """Render ``record`` as JSON."""
        data: dict[str, object] = {
            "ts": round(record.created, 3),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        rid = getattr(record, "request_id", "") or REQUEST_ID.get()
        if rid:
            data["request_id"] = rid
        for key, value in vars(record).items():
            if key not in self._STANDARD and key != "request_id" and not key.startswith("_"):
                data[key] = redact(value) if isinstance(value, str) else value
        if record.exc_info or record.exc_text:
            data["exc"] = record.exc_text or self.formatException(record.exc_info)  # type: ignore[arg-type]
        return json.dumps(data, default=str, ensure_ascii=False)


def configure_json_logging(level: str) -> None:
    """Send every log record to stderr as one JSON line (the format `hearth serve` uses)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)  # our middleware writes the access line
    harden_logging()


def route_of(request: web.Request) -> str:
    """The matched route template (bounded label set); 'unmatched' for unknown paths."""
    info = request.match_info
    if isinstance(info, web.UrlMappingMatchInfo) and info.http_exception is None:
        resource = info.route.resource
        if resource is not None:
            return resource.canonical
    return "unmatched"


def surface_of(route: str) -> str:
    """The surface a route belongs to: rest for /v1, ops for health and metrics, else its first segment."""
    first = route.strip("/").split("/", 1)[0]
    if first == "v1":
        return "rest"
    if first in ("healthz", "readyz", "metrics", "") or route == "unmatched":
        return "ops"
    return first


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    """The JSON error body every Hearth endpoint uses."""
    # No credential in a sentence a client reads, whichever error produced it.
    message = redact(message)
    # "message" is repeated at the top level for clients that read only that.
    body = {"error": {"code": code, "message": message}, "message": message, "request_id": REQUEST_ID.get()}
    return web.json_response(body, status=status, headers=headers)


_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
    501: "not_implemented",
    503: "unavailable",
}


class ApiError(Exception):
    """Raised by a handler to answer with the JSON error body (status, code, one sentence)."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers

    def response(self) -> web.Response:
        """The JSON response for this error."""
        return error_response(self.status, self.code, self.message, self.headers)


def _from_http_exception(exc: web.HTTPException) -> web.StreamResponse:
    if exc.status == 404:
        message = "No such endpoint — see /v1/openapi.json for the API."
    elif exc.status == 405:
        message = f"Method not allowed; use {exc.headers.get('Allow', 'another method')}."
    elif exc.status == 413:
        message = "The request body is too large (server.max_body_bytes)."
    else:
        message = exc.text or exc.reason
    headers = {
        k: v for k, v in exc.headers.items() if k.lower() in ("allow", "retry-after", "www-authenticate")
    }
    return error_response(exc.status, _STATUS_CODES.get(exc.status, "error"), message, headers)


@web.middleware
async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Request id, access log line, metrics, and JSON errors without tracebacks."""
    incoming = request.headers.get("X-Request-Id", "")
    rid = incoming if _SAFE_ID.match(incoming) else uuid.uuid4().hex
    token = REQUEST_ID.set(rid)
    request[REQUEST_ID_KEY] = rid
    route = route_of(request)
    surface = surface_of(route)
    started = time.perf_counter()
    status = 500
    try:
        try:
            response = await handler(request)
        except ApiError as exc:
            response = exc.response()
        except web.HTTPException as exc:
            response = _from_http_exception(exc)
        except Exception:
            log.exception("unhandled error on %s %s", request.method, request.path)
            core_metrics.ERRORS.labels("internal", surface).inc()
            response = error_response(
                500,
                "internal",
                "Something went wrong on the server; the log has the details under this request id.",
            )
        except asyncio.CancelledError:
            status = 499  # the client went away (nginx's convention)
            raise
        status = response.status
        if not response.prepared:
            response.headers["X-Request-Id"] = rid
        return response
    finally:
        elapsed = time.perf_counter() - started
        core_metrics.HTTP_REQUESTS.labels(route, surface, str(status)).inc()
        core_metrics.HTTP_LATENCY.labels(route, surface).observe(elapsed)
        if route != "/metrics" and route not in ("/healthz", "/readyz"):
            log.info(
                "%s %s %s",
                request.method,
                request.path,
                status,
                extra={
                    "route": route,
                    "surface": surface,
                    "status": status,
                    "duration_ms": round(elapsed * 1000, 1),
                    "user": request.get(USER_KEY),
                },
            )
        REQUEST_ID.reset(token)


async def metrics_handler(request: web.Request) -> web.Response:
    """Prometheus text exposition of every Hearth metric."""
    resp = web.Response(body=generate_latest())
    resp.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return resp
