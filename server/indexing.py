"""Indexing inside `hearth serve`: the one owner of the index, on demand and on a schedule.

An embedded store is opened by one process, so the serving process does the indexing: `hearth
index` and `hearth search` send their work here (``core.retrieval.owner`` finds this server
through the owner file written by :func:`announce`) instead of fighting over the files. Routes,
all for a token holding ``hearth:admin`` (the server mints one for itself into the owner file;
an operator can create another with ``hearth tokens create --user ops --acl hearth:admin``):

- ``POST /v1/index`` ``{"sources": [...], "rebuild": false}``: sync now; with
  ``Accept: text/event-stream`` progress streams as ``begin``/``advance`` events, then ``done``
  with the per-source reports (or ``error``). A run continues if the client goes away.
- ``GET /v1/index``: the store in use (kind, location, points, size) and each source's schedule.
- ``POST /v1/index/search``: search as the operator or as any ACL (what `hearth search` does).

Sources also re-sync by themselves every ``sources[].sync_every`` (default 15 minutes; each run
up to 10% later at random). One run at a time: a request waits for the run in progress.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import re
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Literal

from aiohttp import web
from pydantic import Field

from core.config import Settings
from core.db import Database
from core.errors import ConfigError, HearthError
from core.jsontypes import JsonObject, JsonValue
from core.retrieval.owner import ADMIN, find_owner, owner_file, read_owner, remove_owner, write_owner
from core.retrieval.rerank import SharedReranker
from core.retrieval.search import DocsRetriever
from core.retrieval.state import SyncState
from core.retrieval.sync import Indexer, SourceReport
from core.services import Services
from server.auth import TOKEN_INFO, TOKENS, TokenStore
from server.bodies import Body, Integer, Text, read_body
from server.observability import ApiError
from server.openapi import Operation, expose, ok, ref

log = logging.getLogger(__name__)

JITTER = 0.1  # a scheduled run starts up to this fraction of its interval late
STALE_START_S = 30.0  # a source overdue at start waits up to this long (so startup is not a stampede)
OWNER_USER = "hearth-serve"


def next_due(base: float | None, every: float, started: float, rand: float) -> float | None:
    """When a source next syncs: ``every`` after its last sync or attempt (``base``), plus jitter.

    Never synced: one interval after the server started. Overdue when the server starts: within
    STALE_START_S of the start. ``every`` 0: never (None).
    """
    if every <= 0:
        return None
    jitter = every * JITTER * rand
    if base is None:
        return started + every + jitter
    return max(base + every + jitter, started + STALE_START_S * rand)


class QueueProgress:
    """Progress events of one run, for the streaming response."""

    def __init__(self) -> None:
        self.events: asyncio.Queue[tuple[str, JsonObject]] = asyncio.Queue()

    def begin(self, source: str, total_chunks: int) -> None:
        """A source starts."""
        self.events.put_nowait(("begin", {"source": source, "total_chunks": total_chunks}))

    def advance(self, chunks: int) -> None:
        """More chunks are stored."""
        self.events.put_nowait(("advance", {"chunks": chunks}))


class IndexService:
    """The index owner of one server: one indexer, one run at a time, the schedule."""

    def __init__(
        self,
        settings: Settings,
        db: Database,
        *,
        clock: Callable[[], float] = time.time,
        rand: Callable[[], float] = random.random,
        reranker: SharedReranker | None = None,
    ) -> None:
        self.settings = settings
        self.db = db
        self.reranker = reranker
        self.clock, self.rand = clock, rand
        self.started = clock()
        self.lock = asyncio.Lock()
        self.running: list[str] | None = None
        self.last_reports: list[JsonObject] = []
        self.due: dict[str, float | None] = {}
        self.attempted: dict[str, float] = {}
        self._indexer: Indexer | None = None
        self._retriever: DocsRetriever | None = None
        self._tasks: set[asyncio.Task[list[SourceReport]]] = set()
        self._token_id: str | None = None

    def indexer(self) -> Indexer:
        """The indexer (built on first use; it shares the process's store and embedder)."""
        if self._indexer is None:
            self._indexer = Indexer(self.settings, db=self.db)
        return self._indexer

    def retriever(self) -> DocsRetriever:
        """A retriever on the same store and embedder, lent the process's reranker."""
        if self._retriever is None:
            reranker = self.reranker.get() if self.reranker is not None else None
            self._retriever = DocsRetriever(
                self.settings, embedder=self.indexer().embedder, reranker=reranker
            )
        return self._retriever

    async def _sync(
        self, names: Sequence[str], rebuild: bool, progress: QueueProgress | None
    ) -> list[SourceReport]:
        async with self.lock:
            self.running = list(names) or [s.name for s in self.settings.sources]
            for name in self.running:
                self.attempted[name] = self.clock()
            try:
                reports = await self.indexer().sync(names, progress, rebuild=rebuild)
            finally:
                self.running = None
            self.last_reports = [r.as_dict() for r in reports]
            await self.plan()
            return reports

    def start(
        self, names: Sequence[str] = (), *, rebuild: bool = False, progress: QueueProgress | None = None
    ) -> asyncio.Task[list[SourceReport]]:
        """A sync run as its own task (it completes even if whoever asked goes away)."""
        self.indexer().specs(names)  # an unknown source fails now, as a ConfigError
        task = asyncio.create_task(self._sync(names, rebuild, progress), name="hearth-index")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def plan(self) -> None:
        """Recompute each source's next scheduled sync from the state database."""
        state = SyncState(self.db)
        for spec in self.settings.sources:
            last, _, _ = await state.source(spec.name)
            tried = self.attempted.get(spec.name)
            base = max(last or 0.0, tried or 0.0) or None
            self.due[spec.name] = next_due(base, spec.sync_every, self.started, self.rand())

    async def schedule(self) -> None:
        """Run each source's sync when it is due, forever (cancelled on shutdown)."""
        while True:
            try:
                await self.plan()
            except Exception as exc:  # noqa: BLE001 - the state database may be down: retry later
                log.warning("cannot plan scheduled syncs (%s); retrying in a minute", exc)
                await asyncio.sleep(60)
                continue
            pending = {n: d for n, d in self.due.items() if d is not None}
            if not pending:
                return
            wait = max(0.0, min(pending.values()) - self.clock())
            await asyncio.sleep(min(wait, 3600.0))
            due = sorted(n for n, d in pending.items() if d <= self.clock())
            if not due:
                continue
            log.info("scheduled sync of %s", ", ".join(due))
            try:
                reports = await self.start(due)
            except Exception:
                log.exception("scheduled sync of %s failed", ", ".join(due))
                await asyncio.sleep(60)
                continue
            for r in reports:
                if r.error:
                    log.warning("scheduled sync of %s failed: %s", r.source, r.error)

    async def status(self) -> JsonObject:
        """The store in use and each source's schedule (``GET /v1/index``)."""
        info = await self.indexer().store.info()
        state = SyncState(self.db)
        sources: list[JsonObject] = []
        for spec in self.settings.sources:
            last, _, _ = await state.source(spec.name)
            due = self.due.get(spec.name)
            sources.append(
                {"name": spec.name, "sync_every": spec.sync_every, "last_sync": last, "next_sync": due}
            )
        running: list[JsonValue] | None = list(self.running) if self.running is not None else None
        return {
            "store": info.as_dict(),
            "running": running,
            "sources": list(sources),
            "last_reports": list(self.last_reports),
        }

    async def claim(self, tokens: TokenStore, url: str) -> None:
        """Become the announced owner of the embedded store: a token for the CLI, the owner file."""
        path = owner_file(self.settings)
        if path is None:
            return
        live = find_owner(self.settings)
        if live is not None:
            log.warning("another hearth serve (pid %d) announces this store at %s", live.pid, live.url)
        else:
            previous = read_owner(path)  # left by a server that was killed: its token must not outlive it
            match = re.match(r"^hth_([0-9a-f]{12})_", previous.token) if previous is not None else None
            if match is not None:
                await tokens.revoke(match.group(1))
        try:
            await self.indexer().store.count()  # open the store now: this process holds it
        except HearthError as exc:
            log.error("the document index cannot be opened: %s", exc)
        info, token = await tokens.create(OWNER_USER, [ADMIN])
        self._token_id = info.id
        write_owner(self.settings, url, token)
        log.info("owning the document index at %s (hearth index/search go through %s)", path.parent, url)

    async def aclose(self, tokens: TokenStore) -> None:
        """Stop runs, withdraw the owner file and its token, close the store."""
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        remove_owner(self.settings)
        if self._token_id is not None:
            with contextlib.suppress(Exception):
                await tokens.revoke(self._token_id)
        if self._retriever is not None:
            await self._retriever.aclose()
        if self._indexer is not None:
            await self._indexer.aclose()


INDEXING = web.AppKey("indexing", IndexService)


class IndexBody(Body):
    """POST /v1/index."""

    sources: list[str] = Field(default_factory=list, description="Sources to sync (default: all).")
    rebuild: bool = Field(False, description="Drop the index and the sync state first.")


class IndexSearchBody(Body):
    """POST /v1/index/search."""

    query: Text = Field(description="What to search for.")
    k: Integer = Field(5, ge=1, le=100, description="How many hits to return.")
    acl: list[str] | None = Field(
        None, description="Search as someone holding only these ACL tokens; null: all."
    )
    mode: Literal["dense", "bm25", "rrf", "hybrid"] | None = Field(
        None, description="Default: retrieval.mode (hybrid: the full pipeline; rrf: plain dense+BM25 fusion)."
    )


def _service(request: web.Request) -> IndexService:
    info = request.get(TOKEN_INFO)
    if info is None or ADMIN not in info.acl:
        raise ApiError(403, "forbidden", f"Indexing needs a token holding '{ADMIN}'.")
    return request.app[INDEXING]


def _sse(event: str, data: JsonObject) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


async def index(request: web.Request) -> web.StreamResponse:
    """POST /v1/index: sync now (progress as Server-Sent Events when asked for)."""
    service = _service(request)
    body = await read_body(request, IndexBody)
    stream = "text/event-stream" in request.headers.get("Accept", "")
    progress = QueueProgress() if stream else None
    try:
        task = service.start(body.sources, rebuild=body.rebuild, progress=progress)
    except ConfigError as exc:
        raise ApiError(404, "not_found", str(exc)) from None
    if progress is None:
        try:
            reports = await asyncio.shield(task)
        except HearthError as exc:
            raise ApiError(503, "unavailable", str(exc)) from None
        return web.json_response({"reports": [r.as_dict() for r in reports]})
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    await resp.prepare(request)
    while True:
        getter = asyncio.ensure_future(progress.events.get())
        done, _ = await asyncio.wait({getter, task}, return_when=asyncio.FIRST_COMPLETED)
        if getter in done:
            event, data = getter.result()
            await resp.write(_sse(event, data))
            continue
        getter.cancel()
        while not progress.events.empty():
            event, data = progress.events.get_nowait()
            await resp.write(_sse(event, data))
        break
    try:
        reports = task.result()
        await resp.write(_sse("done", {"reports": [r.as_dict() for r in reports]}))
    except HearthError as exc:
        await resp.write(_sse("error", {"code": "unavailable", "message": str(exc)}))
    except Exception:
        log.exception("index run failed")
        await resp.write(
            _sse("error", {"code": "internal", "message": "The index run failed; see the server log."})
        )
    await resp.write_eof()
    return resp


async def status(request: web.Request) -> web.StreamResponse:
    """GET /v1/index: the store and the schedule."""
    try:
        return web.json_response(await _service(request).status())
    except HearthError as exc:
        raise ApiError(503, "unavailable", str(exc)) from None


async def search(request: web.Request) -> web.StreamResponse:
    """POST /v1/index/search: hits as the operator (acl null) or as the ACL given."""
    service = _service(request)
    body = await read_body(request, IndexSearchBody)
    acl = frozenset(body.acl) if body.acl is not None else None
    try:
        hits = await service.retriever().search(body.query, acl=acl, k=body.k, mode=body.mode)
    except HearthError as exc:
        raise ApiError(503, "unavailable", str(exc)) from None
    return web.json_response({"query": body.query, "hits": [h.as_dict(i) for i, h in enumerate(hits, 1)]})


_EVENTS = (
    "With `Accept: text/event-stream`: `event: begin` `{source, total_chunks}` per source, `event: advance` "
    "`{chunks}` as chunks are stored, then `event: done` `{reports}` or `event: error` `{code, message}`."
)
ENDPOINTS = [
    (
        Operation(
            "POST",
            "/v1/index",
            "Sync document sources now (the server owns the index); needs a token holding hearth:admin.",
            ok("The per-source sync reports.", {"type": "object"}, stream=True),
            IndexBody,
            errors=(403, 404, 503),
            description=_EVENTS,
        ),
        index,
    ),
    (
        Operation(
            "GET",
            "/v1/index",
            "The vector store in use and each source's sync schedule; needs hearth:admin.",
            ok("Store kind, location, points, size; sources with last and next sync.", {"type": "object"}),
            errors=(403, 503),
        ),
        status,
    ),
    (
        Operation(
            "POST",
            "/v1/index/search",
            "Search as the operator or as the ACL given (what `hearth search` does); needs hearth:admin.",
            ok("Hits, best first.", ref("SearchResult")),
            IndexSearchBody,
            errors=(403, 503),
        ),
        search,
    ),
]


def mount(app: web.Application, services: Services) -> None:
    """Add the index routes and the scheduled re-sync (nothing when no sources are configured)."""
    settings = services.settings
    if not settings.sources:
        return
    service = IndexService(settings, services.db, reranker=services.reranker)
    app[INDEXING] = service
    for op, handler in ENDPOINTS:
        expose(app, op, handler)

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        scheduler = asyncio.create_task(service.schedule(), name="hearth-index-schedule")
        yield
        scheduler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await scheduler
        await service.aclose(app[TOKENS])

    app.cleanup_ctx.append(ctx)


async def announce(app: web.Application, urls: Sequence[str]) -> None:
    """Called once the server listens: own the embedded store and say where (the owner file)."""
    service = app.get(INDEXING)
    if service is None or not urls:
        return
    url = urls[0]
    for wildcard, local in (("//0.0.0.0:", "//127.0.0.1:"), ("//[::]:", "//[::1]:")):
        url = url.replace(wildcard, local)
    try:
        await service.claim(app[TOKENS], url)
    except Exception as exc:  # noqa: BLE001 - the state database may be down: the CLI then gets the lock error
        log.error("could not announce this server as the index owner: %s", exc)
