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
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from core.audit import AuditEntry
from core.contracts import Answer, Completion, Delta, Request, Snippet, Turn
from core.errors import HearthError, TableError
from core.intake import Ask, Code, Kind
from core.llm.base import Priority
from core.refusals import Reason, Refusal, refusal_for, sentence
from core.services import Services
from core.tables.service import table_json
from server import bodies
from server.auth import TOKEN_INFO, TokenInfo
from server.bodies import (
    AskBody,
    CompleteBody,
    ExplainBody,
    GenerateBody,
    SearchBody,
    TablesAskBody,
    TestsBody,
    TurnBody,
    read_body,
)
from server.observability import REQUEST_ID_KEY, ApiError, error_response
from server.openapi import CONTRACT, SSE_DOC, Operation, expose, ok, ref
from server.state import AUDIT, INTAKE, LIFECYCLE, SETTINGS

log = logging.getLogger(__name__)

SHUTTING_DOWN = "Hearth is restarting and could not finish this answer; please retry in a moment."


# --- refusals in HTTP terms ------------------------------------------------------------------
# Each reason of the core's intake as (HTTP status, error code); the sentence is core.refusals.ENGLISH.
STATUS: dict[Reason, tuple[int, str]] = {
    Reason.DUPLICATE: (409, "duplicate"),
    Reason.EMPTY: (400, "bad_request"),
    Reason.EMPTY_CODE: (400, "bad_request"),
    Reason.TOO_LONG: (400, "bad_request"),
    Reason.BINARY: (400, "bad_request"),
    Reason.BAD_INPUT: (400, "bad_request"),
    Reason.RATE_LIMITED: (429, "rate_limited"),
    Reason.NOT_READY: (503, "unavailable"),
    Reason.MODEL_DOWN: (503, "unavailable"),
    Reason.RETRIEVAL_DOWN: (503, "unavailable"),
    Reason.TABLES_UNAVAILABLE: (501, "not_implemented"),
    Reason.TABLES_NO_ACCESS: (403, "forbidden"),
    Reason.TABLE_NO_SQL: (422, "table_error"),
    Reason.CODE_UNAVAILABLE: (501, "not_implemented"),
    Reason.COMPLETION_UNAVAILABLE: (501, "not_implemented"),  # how the server is set up, not an outage
    Reason.CODE_UNUSABLE: (422, "unusable_output"),  # the model's output, not the request, was at fault
    Reason.SQL_REJECTED: (422, "rejected"),
    Reason.TABLE_ERROR: (422, "table_error"),
    Reason.ERROR: (500, "internal"),
}


def refusal_response(refusal: Refusal) -> web.Response:
    """The JSON error for a refusal (429s and 503s say when to retry)."""
    status, code = STATUS[refusal.reason]
    headers = None
    if status == 503:
        headers = {"Retry-After": "5"}
    elif status == 429:
        headers = {"Retry-After": str(max(1, math.ceil(float(refusal.values.get("seconds", 1)))))}
    return error_response(status, code, sentence(refusal), headers)


def _sse(event: str, data: dict[str, object]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


def _refusal_event(refusal: Refusal) -> bytes:
    return _sse("error", {"code": STATUS[refusal.reason][1], "message": sentence(refusal)})


def make_request(
    request: web.Request,
    text: str,
    *,
    history: list[TurnBody] | None = None,
    priority: Priority = Priority.CHAT,
) -> Request:
    """The core Request for an authenticated REST call."""
    info: TokenInfo = request[TOKEN_INFO]
    return Request(
        text=text,
        user=info.user,
        surface=bodies.surface(request),
        acl=info.grants,
        history=[Turn(t.role, t.text) for t in history or []],
        priority=priority,
        request_id=request[REQUEST_ID_KEY],
    )


def wants_stream(request: web.Request) -> bool:
    """Whether the client asked for Server-Sent Events."""
    return "text/event-stream" in request.headers.get("Accept", "")


def _check_draining(request: web.Request) -> None:
    if request.app[LIFECYCLE].draining:
        raise ApiError(503, "unavailable", SHUTTING_DOWN, {"Retry-After": "5"})


Render = Callable[[Answer], Awaitable[dict[str, object]]]


async def answer(request: web.Request, ask: Ask, *, render: Render | None = None) -> web.StreamResponse:
    """Put ``ask`` through the intake; answer as JSON or SSE (refused before work: a JSON error).

    ``render`` shapes the JSON answer (and makes the endpoint JSON-only).
    """
    _check_draining(request)
    intake = request.app[INTAKE]
    refusal = intake.admit(ask)  # REST has no platform retries to claim: each request is one ask
    if refusal is not None:
        return refusal_response(refusal)
    with request.app[LIFECYCLE].track():
        if render is None and wants_stream(request):
            return await _respond_sse(request, intake.answer(ask))
        # JSON clients get every sentence with its support score: unsupported ones marked, not dropped.
        ask.request.grounding = ask.request.grounding or intake.settings.retrieval.grounding_api
        return await _respond_json(request, intake.answer(ask), render or _as_json)


async def _respond_json(
    request: web.Request, events: AsyncIterator[Delta | Answer | Refusal], render: Render
) -> web.StreamResponse:
    try:
        async for event in events:
            if isinstance(event, Refusal):
                return refusal_response(event)
            if isinstance(event, Answer):
                return web.json_response(await render(event))
    except asyncio.CancelledError:
        if request.app[LIFECYCLE].draining:
            _uncancel()
            return error_response(503, "unavailable", SHUTTING_DOWN, {"Retry-After": "5"})
        raise
    raise HearthError("the intake ended without an answer")


def _answer_json(answer: Answer) -> dict[str, object]:
    if answer.table is None:
        return answer.as_dict()
    return _file_names(table_json(answer)) | {"request_id": answer.request_id}


def _file_names(data: dict[str, Any]) -> dict[str, Any]:
    """``chart`` and ``csv`` as file names: a REST client cannot read the server's disk, and the full
    paths would show its layout (the chart comes inline, ``rows`` holds every row of the CSV)."""
    return data | {key: Path(data[key]).name for key in ("chart", "csv") if data.get(key)}


async def _as_json(answer: Answer) -> dict[str, object]:
    return _answer_json(answer)


async def _with_chart(answer: Answer) -> dict[str, object]:
    """A table answer with its chart inline, since the client cannot read the server's disk."""
    chart = answer.table.chart if answer.table is not None else None
    return _answer_json(answer) | {"chart_png_base64": await asyncio.to_thread(_png_base64, chart)}


async def _respond_sse(
    request: web.Request, events: AsyncIterator[Delta | Answer | Refusal]
) -> web.StreamResponse:
    resp = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream; charset=utf-8",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
            "X-Request-Id": request[REQUEST_ID_KEY],
        }
    )
    # A request refused before any text (bad code, an unknown language) is a JSON 4xx, not a stream;
    # the server's own failures (no model) stay an `error` event, as the stream contract says.
    try:
        first = await anext(events, None)
    except asyncio.CancelledError:
        if not request.app[LIFECYCLE].draining:
            raise
        _uncancel()
        await _aclose(events)
        return error_response(503, "unavailable", SHUTTING_DOWN, {"Retry-After": "5"})
    if isinstance(first, Refusal) and STATUS[first.reason][0] < 500:
        return refusal_response(first)
    await resp.prepare(request)
    try:
        async for event in _prepend(first, events):
            if isinstance(event, Delta):
                await resp.write(_sse("delta", {"text": event.text}))
            elif isinstance(event, Answer):
                await resp.write(_sse("answer", _answer_json(event)))
            else:
                await _try_write(resp, _refusal_event(event))
    except ConnectionError:
        # The client went away between two events: stop generating, free the model.
        await _aclose(events)
        return resp
    except asyncio.CancelledError:
        if not request.app[LIFECYCLE].draining:
            raise  # the client disconnected: nobody to tell
        _uncancel()
        await _aclose(events)
        await _try_write(resp, _sse("error", {"code": "unavailable", "message": SHUTTING_DOWN}))
    try:
        await resp.write_eof()
    except ConnectionError:
        pass
    return resp


async def _prepend(
    first: Delta | Answer | Refusal | None, rest: AsyncIterator[Delta | Answer | Refusal]
) -> AsyncIterator[Delta | Answer | Refusal]:
    if first is not None:
        yield first
    async for event in rest:
        yield event


def _uncancel() -> None:
    task = asyncio.current_task()
    if task is not None:
        task.uncancel()


async def _aclose(events: AsyncIterator[object]) -> None:
    close = getattr(events, "aclose", None)
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
    return await answer(request, Ask(Kind.ASK, make_request(request, body.question, history=body.history)))


async def search(request: web.Request) -> web.StreamResponse:
    """POST /v1/search: the hybrid-search hits the token may read."""
    body = await read_body(request, SearchBody)
    _check_draining(request)
    engine = request.app[INTAKE].engine
    if engine is None:
        return refusal_response(request.app[INTAKE].not_ready())
    if engine.retriever is None:
        return error_response(
            501,
            "not_implemented",
            "Search is not available on this server — configure document sources and run 'hearth index'.",
        )
    req = make_request(request, body.query)
    entry = AuditEntry(
        user=req.user, surface=req.surface, action="search", question=req.text, request_id=req.request_id
    )
    started = time.perf_counter()
    try:
        hits = await engine.retriever.search(body.query, acl=req.acl, k=body.k)
        entry.sources = [h.uri for h in hits]
    except HearthError as exc:
        entry.status, entry.error = "error", str(exc)
        return refusal_response(refusal_for(exc))
    finally:
        entry.duration_ms = (time.perf_counter() - started) * 1000
        request.app[AUDIT].record(entry)
    return web.json_response({"query": body.query, "hits": [h.as_dict(i) for i, h in enumerate(hits, 1)]})


async def tables_ask(request: web.Request) -> web.StreamResponse:
    """POST /v1/tables/ask: a question answered with guarded SQL over the tables the token may query."""
    body = await read_body(request, TablesAskBody)
    ask = Ask(Kind.TABLES, make_request(request, body.question), source=body.source)
    engine = request.app[INTAKE].engine
    if body.source is not None and engine is not None and engine.tables is not None:
        try:
            engine.tables.spec(body.source, ask.request.acl)  # one the token may not read is unknown too
        except TableError as exc:
            return error_response(404, "not_found", str(exc))
    return await answer(request, ask, render=_with_chart)


def _png_base64(path: Path | None) -> str | None:
    """The chart as base64, or None when there is none (or it cannot be read)."""
    if not path:
        return None
    try:
        return base64.b64encode(Path(path).read_bytes()).decode("ascii")
    except OSError:
        return None


def _code_ask(request: web.Request, kind: Kind, body: ExplainBody | GenerateBody | TestsBody) -> Ask:
    what = {Kind.EXPLAIN: "explain", Kind.GENERATE: "generate", Kind.TESTS: "tests for"}[kind]
    req = make_request(request, f"{what} {body.path or body.language} code", priority=Priority.EDITOR)
    code = Code(
        body.code,
        body.language,
        body.path,
        body.context,
        failures=getattr(body, "failures", None),
        previous=getattr(body, "previous", None),
    )
    return Ask(kind, req, code=code)


async def code_explain(request: web.Request) -> web.StreamResponse:
    """POST /v1/code/explain: a Markdown explanation of the code."""
    return await answer(request, _code_ask(request, Kind.EXPLAIN, await read_body(request, ExplainBody)))


async def code_generate(request: web.Request) -> web.StreamResponse:
    """POST /v1/code/generate: the model's implementation of a comment, docstring or function head."""
    return await answer(request, _code_ask(request, Kind.GENERATE, await read_body(request, GenerateBody)))


async def code_tests(request: web.Request) -> web.StreamResponse:
    """POST /v1/code/tests: a test module for the code."""
    return await answer(request, _code_ask(request, Kind.TESTS, await read_body(request, TestsBody)))


async def code_complete(request: web.Request) -> web.StreamResponse:
    """POST /v1/code/complete: an inline suggestion at an editor's cursor (a client that leaves stops it)."""
    body = await read_body(request, CompleteBody)
    req = make_request(request, f"complete {body.path or body.language} code", priority=Priority.EDITOR)
    snippets = tuple(Snippet(s.path, s.text) for s in body.snippets)
    completion = Completion(body.prefix, body.suffix, body.language, body.path, snippets, body.max_tokens)
    return await answer(request, Ask(Kind.COMPLETE, req, completion=completion))


async def openapi(request: web.Request) -> web.Response:
    """GET /v1/openapi.json: the OpenAPI 3 description of this API (questions bounded as the intake is)."""
    intake = request.app[INTAKE]
    limit = intake.limit_for("rest") if intake.engine is not None else None
    body_bytes = request.app[SETTINGS].server.max_body_bytes
    return web.json_response(
        request.app[CONTRACT].document(max_question_chars=limit, max_body_bytes=body_bytes)
    )


# --- what the document declares for each handler ---------------------------------------------
_ANSWER = ok("The answer.", ref("Answer"), stream=True)
ENDPOINTS: list[tuple[Operation, Handler]] = [
    (
        Operation(
            "POST",
            "/v1/ask",
            "Ask a question; the answer cites the documents it used.",
            _ANSWER,
            AskBody,
            surface=True,
            description=SSE_DOC,
        ),
        ask,
    ),
    (
        Operation(
            "POST",
            "/v1/search",
            "Hybrid search over the documents the token may read.",
            ok("Hits, best first.", ref("SearchResult")),
            SearchBody,
            errors=(501,),
            surface=True,
            # What a client does next: ask about the top hit (schemathesis's stateful phase follows it).
            links={
                "AskAboutTheTopHit": {
                    "operationId": "post_v1_ask",
                    "requestBody": {"question": "$response.body#/hits/0/title"},
                    "description": "Ask about the best hit's document.",
                }
            },
        ),
        search,
    ),
    (
        Operation(
            "POST",
            "/v1/tables/ask",
            "Answer a question over the configured tables with guarded SQL.",
            ok(
                "The answer, the SQL that produced it and the rows (the `hearth tables ask --json` shape), "
                "plus the chart inline as base64 PNG.",
                ref("TableAnswer"),
            ),
            TablesAskBody,
            errors=(403, 404, 422, 501),
            surface=True,
        ),
        tables_ask,
    ),
    (
        Operation(
            "POST",
            "/v1/code/explain",
            "Explain a piece of code in Markdown.",
            _ANSWER,
            ExplainBody,
            surface=True,
            description=SSE_DOC,
        ),
        code_explain,
    ),
    (
        Operation(
            "POST",
            "/v1/code/generate",
            "Implement a comment, docstring or function head; the answer streams the model's code.",
            _ANSWER,
            GenerateBody,
            errors=(422, 501),
            surface=True,
            description=SSE_DOC,
        ),
        code_generate,
    ),
    (
        Operation(
            "POST",
            "/v1/code/tests",
            "Write a pytest module for a piece of code; the answer streams the file.",
            _ANSWER,
            TestsBody,
            errors=(422, 501),
            surface=True,
            description=SSE_DOC,
        ),
        code_tests,
    ),
    (
        Operation(
            "POST",
            "/v1/code/complete",
            "An inline suggestion for the text around an editor's cursor; closing the connection stops it.",
            _ANSWER,
            CompleteBody,
            errors=(501,),
            surface=True,
            description=SSE_DOC,
        ),
        code_complete,
    ),
    (
        Operation(
            "GET",
            "/v1/openapi.json",
            "This document.",
            ok("OpenAPI 3.1 document.", {"type": "object"}),
            public=True,
        ),
        openapi,
    ),
]


def mount(app: web.Application, services: Services) -> None:
    """Add the REST API routes (their questions go through ``services.intake``, kept as ``app[INTAKE]``)."""
    for op, handler in ENDPOINTS:
        expose(app, op, handler)
