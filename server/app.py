"""The aiohttp application of `hearth serve`.

``create_app(settings)`` builds the app: request ids, JSON errors and metrics (middleware),
bearer-token auth on /v1, /healthz, /readyz, /metrics, and every surface's routes. It is the
composition root: it builds the state database, the audit log and the intake once, and hands them
to each surface's *mount* in ``MOUNTS`` as a ``core.services.Services``: ``mount(app, services)``.

Opened and closed in ``cleanup_ctx`` generators: the state database (``app[DATABASE]``), the
audit log (``app[AUDIT]``), the assistant (``app[ASSISTANT]``) and, last, the one reranker that
the assistant's retriever and ``/v1/index/search``'s share (``Services.reranker``). If the assistant cannot be
built at start (a store or database down), the app still starts, /readyz says why, and the
build is retried in the background: no crash loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import warnings
from collections.abc import AsyncIterator, Callable
from typing import Any

from aiohttp import web

from bot.dingtalk import http as dingtalk_http
from bot.slack import http as slack_http
from core.assistant import Assistant
from core.audit import AuditLog, audit_log
from core.config import Settings
from core.db import Database
from core.intake import Intake
from core.intake_metrics import METRICS
from core.llm.base import GenOptions, Message, Role, collect
from core.ratelimit import RateLimiter
from core.retrieval.rerank import SharedReranker
from core.services import Services
from server import api, digests, health, indexing
from server.auth import COMPLETION_LIMITER, LIMITER, TOKENS, TokenStore, api_tokens, require_token
from server.observability import observe
from server.state import ASSISTANT, AUDIT, DATABASE, INTAKE, LIFECYCLE, SETTINGS, Lifecycle

__all__ = ["ASSISTANT", "AUDIT", "DATABASE", "INTAKE", "LIFECYCLE", "MOUNTS", "SETTINGS", "create_app"]

log = logging.getLogger(__name__)

Mount = Callable[[web.Application, Services], None]
# Each surface's mount; a mount returns at once when its surface is disabled.
MOUNTS: list[Mount] = [api.mount, dingtalk_http.mount, slack_http.mount, digests.mount, indexing.mount]

# Seconds between attempts to build the assistant after a failed start (doubling up to the cap).
RETRY_START_S = 2.0
RETRY_MAX_S = 60.0


def create_app(settings: Settings, *, assistant: Assistant | None = None) -> web.Application:
    """Build the `hearth serve` application; pass ``assistant`` to inject one (tests)."""
    app = web.Application(
        client_max_size=settings.server.max_body_bytes, middlewares=[observe, require_token]
    )
    life = Lifecycle()
    app[SETTINGS] = settings
    app[LIFECYCLE] = life
    app[LIMITER] = RateLimiter(settings.server.rate_limit_per_minute)
    app[COMPLETION_LIMITER] = RateLimiter(settings.server.completion_rate_limit_per_minute)
    # The composition root: one database, one audit log, one intake, handed to every surface.
    db = Database(settings.database_url)
    audit = AuditLog(db)
    intake = Intake(
        settings,
        lambda: app.get(ASSISTANT),
        db=db,
        observers=[audit, METRICS],
        not_ready=lambda: life.assistant_error or "still starting",
    )
    app[DATABASE], app[AUDIT], app[INTAKE] = db, audit, intake
    app[TOKENS] = TokenStore(db)
    # One reranker for the assistant's retriever and /v1/index/search's: one engine, one model load.
    reranker = SharedReranker(settings.retrieval.rerank, server_path=settings.llama_server_path)
    services = Services(
        settings,
        db,
        intake,
        engine=lambda: app.get(ASSISTANT),
        digests=lambda: app.get(digests.DIGESTS),
        audit=audit,
        reranker=reranker,
    )

    async def reranker_ctx(app: web.Application) -> AsyncIterator[None]:
        yield
        await reranker.aclose()  # last: every retriever lent it is closed by now

    async def state_ctx(app: web.Application) -> AsyncIterator[None]:
        try:
            # Create the tables now, so concurrent first requests never race on DDL.
            await db.ensure([api_tokens, audit_log])
        except Exception as exc:  # noqa: BLE001 - the database may be down: /readyz says so, calls retry
            log.error("state database unavailable at start (%s); will retry on use", exc)
        audit.start()
        yield
        await audit.aclose()
        await db.aclose()

    async def assistant_ctx(app: web.Application) -> AsyncIterator[None]:
        owned = assistant is None
        starter: asyncio.Task[None] | None = None
        if assistant is not None:
            app[ASSISTANT] = assistant
        else:
            tried = asyncio.Event()
            starter = asyncio.create_task(
                _start_assistant(app, settings, life, tried, reranker), name="hearth-assistant-start"
            )
            # Listen only once the first attempt is over (engine built, model loaded, or a failure).
            await tried.wait()
        yield
        if starter is not None and not starter.done():
            starter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await starter
        built = app.get(ASSISTANT)
        if owned and built is not None:
            await built.aclose()

    async def on_shutdown(app: web.Application) -> None:
        # SIGTERM: the listening sockets are closed already; let answers finish, then cancel the rest.
        cancelled = await app[LIFECYCLE].drain(settings.server.shutdown_timeout_s)
        if cancelled:
            grace = settings.server.shutdown_timeout_s
            log.warning("cancelled %d answer(s) still running after %.0fs", cancelled, grace)

    app.cleanup_ctx.append(reranker_ctx)
    app.cleanup_ctx.append(state_ctx)
    app.cleanup_ctx.append(assistant_ctx)
    app.on_shutdown.append(on_shutdown)
    health.mount(app)  # /healthz, /readyz, /metrics, declared in the OpenAPI document
    for mount in MOUNTS:
        mount(app, services)
    return app


async def _start_assistant(
    app: web.Application, settings: Settings, life: Lifecycle, tried: asyncio.Event, reranker: SharedReranker
) -> None:
    """Build the assistant and load the local model, retrying the build with backoff.

    ``tried`` is set once the first attempt is over: built and loaded (or failed to load), or failed
    to build. The server listens only then: llama.cpp silences the process's stderr while it loads a
    model, which would swallow the "listening" line and any log written meanwhile.
    """
    delay = RETRY_START_S
    while True:
        try:
            built = await asyncio.to_thread(build_assistant, settings, reranker)
        except Exception as exc:  # noqa: BLE001 - reported on /readyz, retried
            life.assistant_error = f"could not start the engine: {exc}"
            tried.set()
            log.error("could not start the engine (retrying in %.0fs): %s", delay, exc, exc_info=True)
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX_S)
            continue
        break
    load = getattr(built.router.local, "load", None)
    if load is not None:
        life.model_loading = True
        try:
            await load()
        except Exception as exc:  # noqa: BLE001 - the router falls back and /readyz reports it
            life.model_error = str(exc)
            log.warning("the local model did not load at start: %s", exc)
        finally:
            life.model_loading = False
    await warm_up(built)
    with warnings.catch_warnings():
        # After a retry the app has started: aiohttp frowns on changing a running app's state,
        # but surfaces look the engine up per request (app.get(ASSISTANT)), so late is fine.
        warnings.simplefilter("ignore", DeprecationWarning)
        app[ASSISTANT] = built
    life.assistant_error = None
    tried.set()


async def warm_up(built: Assistant) -> None:
    """Pay the first question's start-up costs before /readyz turns green.

    One search loads the embedder and opens the store; one short local generation runs the engine's
    first decode. A failure here is logged and left to the first real question (which reports it).
    """
    started = time.monotonic()
    if built.retriever is not None:
        try:
            await built.retriever.search("warm up", acl=frozenset(), k=1)
        except Exception as exc:  # noqa: BLE001 - the first question reports the real error
            log.warning("search warm-up failed: %s", exc)
    local = built.router.local
    if local is not None and getattr(local, "loaded", True):
        try:
            await collect(local.stream([Message(Role.USER, "Hello")], GenOptions(max_tokens=1, seed=0)))
        except Exception as exc:  # noqa: BLE001 - the router falls back; /readyz reports the engine
            log.warning("model warm-up failed: %s", exc)
    log.info("warmed up in %.1fs", time.monotonic() - started)


def build_assistant(settings: Settings, reranker: SharedReranker | None = None) -> Assistant:
    """The assistant with every capability the settings enable (lent the process's reranker)."""
    from core.engine import build_assistant as build

    return build(settings, reranker=reranker.get() if reranker is not None and settings.sources else None)


def describe(app: web.Application) -> list[dict[str, Any]]:
    """Routes for logs and `--help` text."""
    return [
        {"method": r.method, "path": r.resource.canonical if r.resource else ""} for r in app.router.routes()
    ]
