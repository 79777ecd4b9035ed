"""The REST API under /v1: ask, search, tables, code; JSON or Server-Sent Events.

Answers come back as the ``Answer`` JSON (``core.contracts.Answer.as_dict``). With
``Accept: text/event-stream`` the same answer streams as SSE::

    event: delta            (repeated)
    data: {"text": "Hello"}

    event: answer           (last, on success)
    data: {"answer": "...", "citations": [...], "backend": "local", ...}

    event: error            (last, on failure)
    data: {"code": "unavailable", "message": "..."}

`hearth lsp --server URL` is a client of exactly these shapes; extend them, never break them.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, Literal, TypeVar

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from core import metrics
from core.assistant import Assistant
from core.config import Settings
from core.contracts import Answer, Delta, Request, Turn
from core.errors import BackendError, HearthError, InputError, RetrievalError, SQLRejected, TableError
from core.llm.base import Priority
from server.audit import AuditEntry
from server.auth import TOKEN_INFO, TokenInfo
from server.observability import REQUEST_ID_KEY, ApiError, error_response
from server.state import ASSISTANT, AUDIT, LIFECYCLE

log = logging.getLogger(__name__)

BODY_TIMEOUT_S = 30.0
SHUTTING_DOWN = "Hearth is restarting and could not finish this answer; please retry in a moment."
# Callers may say which client they are (the editor plugin sends "lsp"); anything else counts as "rest".
_SURFACES = {"rest", "lsp", "cli", "web"}

M = TypeVar("M", bound=BaseModel)


# --- request bodies ---------------------------------------------------------------------------
class Body(BaseModel):
    """Base of the request bodies: unknown fields are ignored so older servers accept newer clients."""

    model_config = ConfigDict(extra="ignore")


class TurnBody(Body):
    """An earlier message of the conversation."""

    role: Literal["user", "assistant"] = Field(description="Who said it.")
    text: str = Field(description="What was said.")


class AskBody(Body):
    """POST /v1/ask."""

    question: str = Field(min_length=1, description="The question.")
    history: list[TurnBody] = Field(default_factory=list, description="Earlier turns, oldest first.")


class SearchBody(Body):
    """POST /v1/search."""

    query: str = Field(min_length=1, description="What to search for.")
    k: int = Field(5, ge=1, le=50, description="How many hits to return.")


class TablesAskBody(Body):
    """POST /v1/tables/ask."""

    question: str = Field(min_length=1, description="A question about the configured tables.")
    source: str | None = Field(None, description="Limit the question to this table source.")


class ExplainBody(Body):
    """POST /v1/code/explain."""

    code: str = Field(min_length=1, description="The code to explain.")
    language: str = Field(min_length=1, description="Its language, e.g. python.")
    path: str | None = Field(None, description="The file it comes from (for context).")
    context: str | None = Field(None, description="Related code from the workspace.")


class GenerateBody(Body):
    """POST /v1/code/generate."""

    code: str = Field(min_length=1, description="The comment, docstring, TODO or function head to implement.")
    language: str = Field(min_length=1, description="Target language, e.g. python.")
    path: str | None = Field(None, description="The file being edited.")
    context: str | None = Field(None, description="Related code from the workspace.")
    failures: str | None = Field(None, description="Errors from an earlier attempt, for a repair round.")


class TestsBody(Body):
    """POST /v1/code/tests."""

    code: str = Field(min_length=1, description="The code to write tests for.")
    language: str = Field(min_length=1, description="Its language, e.g. python.")
    path: str | None = Field(None, description="The file it comes from (workspace-relative).")
    context: str | None = Field(None, description="Related code from the workspace.")
    failures: str | None = Field(None, description="Failures of the previous tests, for a repair round.")
    previous: str | None = Field(None, description="The previous test file, for a repair round.")


BODIES: dict[str, type[Body]] = {
    "/v1/ask": AskBody,
    "/v1/search": SearchBody,
    "/v1/tables/ask": TablesAskBody,
    "/v1/code/explain": ExplainBody,
    "/v1/code/generate": GenerateBody,
    "/v1/code/tests": TestsBody,
}


class BadRequest(ApiError):
    """A 400 that says what is wrong with the body."""

    def __init__(self, message: str) -> None:
        super().__init__(400, "bad_request", message)


def _field_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"]) or "body"
    if err["type"] == "missing":
        return f"Field '{where}' is required."
    return f"Field '{where}': {err['msg']}."


async def read_body(request: web.Request, model: type[M]) -> M:
    """Parse the JSON body into ``model``; 400 names the bad field, 413 when too large."""
    try:
        async with asyncio.timeout(BODY_TIMEOUT_S):  # a client trickling its body must not hold a slot
            raw = await request.read()  # aiohttp raises 413 beyond server.max_body_bytes
    except TimeoutError:
        raise ApiError(
            408, "timeout", f"The request body did not arrive within {BODY_TIMEOUT_S:.0f}s."
        ) from None
    if not raw.strip():
        raise BadRequest("The request body is empty; send a JSON object.")
    try:
        data = json.loads(raw)
    except UnicodeDecodeError:
        raise BadRequest("The request body is not UTF-8 text.") from None
    except json.JSONDecodeError as exc:
        raise BadRequest(
            f"The request body is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})."
        ) from None
    if not isinstance(data, dict):
        raise BadRequest("The request body must be a JSON object.")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise BadRequest(_field_error(exc)) from None


# --- helpers ----------------------------------------------------------------------------------
def _status_for(exc: HearthError) -> tuple[int, str]:
    """HTTP status and error code for an engine error."""
    if isinstance(exc, InputError):
        return 400, "bad_request"
    if isinstance(exc, SQLRejected):
        return 422, "rejected"
    if isinstance(exc, BackendError | RetrievalError):
        return 503, "unavailable"
    if isinstance(exc, TableError):
        return 422, "table_error"
    return 500, "error"


def make_request(
    request: web.Request,
    text: str,
    *,
    history: list[TurnBody] | None = None,
    priority: Priority = Priority.CHAT,
) -> Request:
    """The core Request for an authenticated REST call."""
    info: TokenInfo = request[TOKEN_INFO]
    surface = request.headers.get("X-Hearth-Surface", "rest").lower()
    return Request(
        text=text,
        user=info.user,
        surface=surface if surface in _SURFACES else "rest",
        acl=info.grants,
        history=[Turn(t.role, t.text) for t in history or []],
        priority=priority,
        request_id=request[REQUEST_ID_KEY],
    )


def wants_stream(request: web.Request) -> bool:
    """Whether the client asked for Server-Sent Events."""
    return "text/event-stream" in request.headers.get("Accept", "")


def assistant_of(request: web.Request) -> Assistant:
    """The assistant, or 503 while it is still starting (or failed to), or shutting down."""
    if request.app[LIFECYCLE].draining:
        raise ApiError(503, "unavailable", SHUTTING_DOWN, {"Retry-After": "5"})
    assistant = request.app.get(ASSISTANT)
    if assistant is None:
        reason = request.app[LIFECYCLE].assistant_error or "still starting"
        raise ApiError(503, "unavailable", f"Hearth is not ready: {reason}.", {"Retry-After": "5"})
    return assistant


def not_available(what: str, fix: str) -> web.Response:
    """501 for a capability this server does not have."""
    return error_response(501, "not_implemented", f"{what} is not available on this server — {fix}.")


def _sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


async def respond(
    request: web.Request, action: str, req: Request, stream: AsyncIterator[Delta | Answer]
) -> web.StreamResponse:
    """Send an answer stream as JSON or SSE, audit it, and make it cancellable."""
    entry = AuditEntry(
        user=req.user, surface=req.surface, action=action, question=req.text, request_id=req.request_id
    )
    started = time.perf_counter()
    lifecycle = request.app[LIFECYCLE]
    try:
        with lifecycle.track():
            if wants_stream(request):
                return await _respond_sse(request, stream, entry)
            return await _respond_json(request, stream, entry)
    finally:
        entry.duration_ms = (time.perf_counter() - started) * 1000
        request.app[AUDIT].record(entry)


async def _respond_json(
    request: web.Request, stream: AsyncIterator[Delta | Answer], entry: AuditEntry
) -> web.StreamResponse:
    answer: Answer | None = None
    try:
        async for event in stream:
            if isinstance(event, Answer):
                answer = event
    except HearthError as exc:
        status, code = _status_for(exc)
        entry.status, entry.error = "error", str(exc)
        metrics.ERRORS.labels(type(exc).__name__, entry.surface).inc()
        log.warning("%s failed: %s", entry.action, exc)
        return error_response(status, code, str(exc), {"Retry-After": "5"} if status == 503 else None)
    except asyncio.CancelledError:
        entry.status = "cancelled"
        if request.app[LIFECYCLE].draining:
            _uncancel()
            return error_response(503, "unavailable", SHUTTING_DOWN, {"Retry-After": "5"})
        raise
    except Exception:
        entry.status, entry.error = "error", "internal error"
        raise  # the middleware logs it and answers 500 without the detail
    assert answer is not None
    entry.with_answer(answer)
    return web.json_response(answer.as_dict())


async def _respond_sse(
    request: web.Request, stream: AsyncIterator[Delta | Answer], entry: AuditEntry
) -> web.StreamResponse:
    resp = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream; charset=utf-8",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
            "X-Request-Id": request[REQUEST_ID_KEY],
        }
    )
    await resp.prepare(request)
    try:
        async for event in stream:
            if isinstance(event, Delta):
                await resp.write(_sse("delta", {"text": event.text}))
            elif isinstance(event, Answer):
                entry.with_answer(event)
                await resp.write(_sse("answer", event.as_dict()))
    except HearthError as exc:
        _, code = _status_for(exc)
        entry.status, entry.error = "error", str(exc)
        metrics.ERRORS.labels(type(exc).__name__, entry.surface).inc()
        log.warning("%s failed mid-stream: %s", entry.action, exc)
        await _try_write(resp, _sse("error", {"code": code, "message": str(exc)}))
    except ConnectionError:
        # The client went away between two events: stop generating, free the model.
        entry.status = "cancelled"
        await _aclose(stream)
        return resp
    except asyncio.CancelledError:
        entry.status = "cancelled"
        if not request.app[LIFECYCLE].draining:
            raise  # the client disconnected: nobody to tell
        _uncancel()
        await _aclose(stream)
        await _try_write(resp, _sse("error", {"code": "unavailable", "message": SHUTTING_DOWN}))
    except Exception:
        # A bug, not a refusal: the log gets the traceback, the client one sentence (headers are sent).
        log.exception("%s failed mid-stream", entry.action)
        entry.status, entry.error = "error", "internal error"
        metrics.ERRORS.labels("internal", entry.surface).inc()
        await _aclose(stream)
        message = "Something went wrong on the server; the log has the details under this request id."
        await _try_write(resp, _sse("error", {"code": "internal", "message": message}))
    try:
        await resp.write_eof()
    except ConnectionError:
        pass
    return resp


def _uncancel() -> None:
    task = asyncio.current_task()
    if task is not None:
        task.uncancel()


async def _aclose(stream: AsyncIterator[Any]) -> None:
    close = getattr(stream, "aclose", None)
    if close is not None:
        try:
            await close()
        except Exception:  # noqa: BLE001 - closing a broken stream must not mask the original problem
            log.debug("closing the answer stream failed", exc_info=True)


async def _try_write(resp: web.StreamResponse, data: bytes) -> None:
    try:
        await resp.write(data)
    except ConnectionError:
        pass


# --- handlers ---------------------------------------------------------------------------------
async def ask(request: web.Request) -> web.StreamResponse:
    """POST /v1/ask: answer a question from the docs the token may read."""
    body = await read_body(request, AskBody)
    assistant = assistant_of(request)
    req = make_request(request, body.question, history=body.history)

    def start() -> AsyncIterator[Delta | Answer]:
        assistant.check_question(req)  # refuse bad input with a 400 before any event is sent
        return assistant.ask_stream(req)

    return await _stream_call(request, "ask", req, start)


async def search(request: web.Request) -> web.StreamResponse:
    """POST /v1/search: the hybrid-search hits the token may read."""
    body = await read_body(request, SearchBody)
    assistant = assistant_of(request)
    if assistant.retriever is None:
        return not_available("Search", "configure document sources and run 'hearth index'")
    req = make_request(request, body.query)
    entry = AuditEntry(
        user=req.user, surface=req.surface, action="search", question=req.text, request_id=req.request_id
    )
    started = time.perf_counter()
    try:
        hits = await assistant.retriever.search(body.query, acl=req.acl, k=body.k)
        entry.sources = [h.uri for h in hits]
    except HearthError as exc:
        entry.status, entry.error = "error", str(exc)
        status, code = _status_for(exc)
        return error_response(status, code, str(exc))
    finally:
        entry.duration_ms = (time.perf_counter() - started) * 1000
        request.app[AUDIT].record(entry)
    return web.json_response({"query": body.query, "hits": [h.as_dict(i) for i, h in enumerate(hits, 1)]})


async def tables_ask(request: web.Request) -> web.StreamResponse:
    """POST /v1/tables/ask: a question answered with guarded SQL over the tables the token may query."""
    body = await read_body(request, TablesAskBody)
    assistant = assistant_of(request)
    tables = getattr(assistant, "tables", None)
    if tables is None:
        return not_available("Table questions", "declare table sources under 'tables:' in hearth.yaml")
    req = make_request(request, body.question)
    entry = AuditEntry(
        user=req.user, surface=req.surface, action="tables.ask", question=req.text, request_id=req.request_id
    )
    started = time.perf_counter()
    try:
        with request.app[LIFECYCLE].track():
            result = await tables.ask(body.question, source=body.source, acl=req.acl, priority=req.priority)
        data = result.as_dict()
        entry.sources = [data["source"]] if data.get("source") else []
        entry.backend, entry.model = str(data.get("backend") or ""), str(data.get("model") or "")
    except HearthError as exc:
        entry.status, entry.error = "error", str(exc)
        status, code = _status_for(exc)
        return error_response(status, code, str(exc))
    finally:
        entry.duration_ms = (time.perf_counter() - started) * 1000
        request.app[AUDIT].record(entry)
    data["chart_png_base64"] = await asyncio.to_thread(_png_base64, data.get("chart"))
    data["request_id"] = req.request_id
    return web.json_response(data)


def _png_base64(path: str | None) -> str | None:
    """The chart image inline, since the client cannot read the server's disk."""
    if not path:
        return None
    try:
        return base64.b64encode(Path(path).read_bytes()).decode("ascii")
    except OSError:
        return None


async def code_explain(request: web.Request) -> web.StreamResponse:
    """POST /v1/code/explain: a Markdown explanation of the code."""
    body = await read_body(request, ExplainBody)
    assistant = assistant_of(request)
    req = make_request(request, f"explain {body.path or body.language} code", priority=Priority.EDITOR)
    code = getattr(assistant, "code", None)
    if code is not None and hasattr(code, "explain_stream"):
        return await _stream_call(
            request,
            "code.explain",
            req,
            lambda: code.explain_stream(body.code, body.language, body.path, body.context, request=req),
        )
    return await _stream_call(
        request,
        "code.explain",
        req,
        lambda: assistant.complete_stream(
            "explain", req, code=body.code, language=body.language, path=body.path, context=body.context
        ),
    )


async def code_generate(request: web.Request) -> web.StreamResponse:
    """POST /v1/code/generate: the model's implementation of a comment, docstring or function head."""
    body = await read_body(request, GenerateBody)
    code = getattr(assistant_of(request), "code", None)
    if code is None or not hasattr(code, "generate_stream"):
        return not_available("Code generation", "this server was built without the code service")
    req = make_request(request, f"generate {body.path or body.language} code", priority=Priority.EDITOR)
    return await _stream_call(
        request,
        "code.generate",
        req,
        lambda: code.generate_stream(
            body.code, body.language, body.path, body.context, failures=body.failures, request=req
        ),
    )


async def code_tests(request: web.Request) -> web.StreamResponse:
    """POST /v1/code/tests: a test module for the code."""
    body = await read_body(request, TestsBody)
    code = getattr(assistant_of(request), "code", None)
    if code is None or not hasattr(code, "tests_stream"):
        return not_available("Test generation", "this server was built without the code service")
    req = make_request(request, f"tests for {body.path or body.language} code", priority=Priority.EDITOR)
    return await _stream_call(
        request,
        "code.tests",
        req,
        lambda: code.tests_stream(
            body.code,
            body.language,
            body.path,
            body.context,
            failures=body.failures,
            previous=body.previous,
            request=req,
        ),
    )


async def _stream_call(
    request: web.Request, action: str, req: Request, make: Callable[[], AsyncIterator[Delta | Answer]]
) -> web.StreamResponse:
    """Start an answer stream; input refused before streaming becomes a JSON error (and an audit row)."""
    try:
        stream = make()
    except HearthError as exc:
        status, code = _status_for(exc)
        request.app[AUDIT].record(
            AuditEntry(
                user=req.user,
                surface=req.surface,
                action=action,
                question=req.text,
                request_id=req.request_id,
                status="error",
                error=str(exc),
            )
        )
        return error_response(status, code, str(exc))
    return await respond(request, action, req, stream)


async def openapi(request: web.Request) -> web.Response:
    """GET /v1/openapi.json: the OpenAPI 3 description of this API."""
    from server.openapi import document

    return web.json_response(document())


ROUTES: list[tuple[str, str, Any]] = [
    ("POST", "/v1/ask", ask),
    ("POST", "/v1/search", search),
    ("POST", "/v1/tables/ask", tables_ask),
    ("POST", "/v1/code/explain", code_explain),
    ("POST", "/v1/code/generate", code_generate),
    ("POST", "/v1/code/tests", code_tests),
    ("GET", "/v1/openapi.json", openapi),
]


def mount(app: web.Application, settings: Settings) -> None:
    """Add the REST API routes."""
    for method, path, handler in ROUTES:
        app.router.add_route(method, path, handler)
