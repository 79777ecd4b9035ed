"""/healthz (the process answers), /readyz (it can serve answers now) and /metrics (Prometheus).

``mount(app)`` routes the three and declares them in the OpenAPI document (server/openapi.py), as
the /v1 routes are; none needs a token (keep the port inside the team's network).

Readiness checks, each with a reason when it fails:

- ``model``: the local model is loaded, or its file is there to load; or a remote API is configured;
- ``store``: the Qdrant server answers (``store.url``), or the local store directory is writable;
- ``database``: the state database answers ``SELECT 1``;
- ``assistant``: the engine was built (its startup error otherwise);
- ``shutdown``: not draining after SIGTERM.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass

import sqlalchemy as sa
from aiohttp import ClientError, ClientSession, ClientTimeout, web

from core.config import Settings
from server.observability import metrics_handler
from server.openapi import Operation, Schema, expose, json_content, ok, ref, text_ok
from server.state import ASSISTANT, DATABASE, LIFECYCLE, SETTINGS

CHECK_TIMEOUT_S = 3.0


@dataclass
class Probe:
    """One readiness check's outcome."""

    ok: bool
    detail: str


async def healthz(request: web.Request) -> web.Response:
    """Liveness: the process is up and serving HTTP."""
    return web.json_response({"status": "ok"})


async def _model(app: web.Application, settings: Settings) -> Probe:
    assistant = app.get(ASSISTANT)
    remote = f"; remote API {settings.llm.remote.base_url} configured" if settings.llm.remote.base_url else ""
    local = assistant.router.local if assistant is not None else None
    if local is None:
        if settings.llm.remote.base_url:
            return Probe(True, f"remote API {settings.llm.remote.base_url}")
        return Probe(False, "no model backend configured — set llm.local or llm.remote.base_url")
    if getattr(local, "loaded", True):
        return Probe(True, f"local model {local.model} loaded{remote}")
    down = getattr(local, "down_reason", None)
    if down:
        return Probe(bool(remote), f"the local engine is down: {down}{remote}")
    life = app[LIFECYCLE]
    if life.model_loading:
        return Probe(False, f"loading the local model{remote}")
    if life.model_error:
        return Probe(bool(remote), f"the local model failed to load: {life.model_error}{remote}")
    if assistant is not None and assistant.router.breaker.is_open and not remote:
        return Probe(False, "the local model failed repeatedly (circuit open)")
    path = settings.llm.local.model_path
    if path is None:
        from core.llm.llama_cpp import bundled_model_path

        try:
            path = await asyncio.to_thread(bundled_model_path)
        except Exception as exc:  # noqa: BLE001 - reported as the reason
            return Probe(bool(remote), f"bundled model unavailable: {exc}{remote}")
    if await asyncio.to_thread(path.is_file):
        return Probe(True, f"local model file {path} present, not loaded yet{remote}")
    return Probe(bool(remote), f"no model file at {path} (llm.local.model_path){remote}")


async def _store(settings: Settings) -> Probe:
    if settings.store.url:
        url = settings.store.url.rstrip("/") + "/readyz"
        headers = {"api-key": settings.store.api_key.get_secret_value()} if settings.store.api_key else {}
        try:
            async with ClientSession(timeout=ClientTimeout(total=CHECK_TIMEOUT_S)) as session:
                async with session.get(url, headers=headers) as resp:
                    if resp.status < 400:
                        return Probe(True, f"Qdrant at {settings.store.url} is ready")
                    return Probe(False, f"Qdrant at {settings.store.url} answered HTTP {resp.status}")
        except (ClientError, TimeoutError, OSError) as exc:
            return Probe(False, f"Qdrant at {settings.store.url} is unreachable ({type(exc).__name__})")
    path = settings.store_path
    parent = path if path.exists() else path.parent
    if await asyncio.to_thread(os.access, parent, os.W_OK):
        return Probe(True, f"local store at {path}")
    return Probe(False, f"local store directory {parent} is not writable (store.path)")


async def _database(app: web.Application) -> Probe:
    db = app[DATABASE]

    def ping(conn: sa.Connection) -> None:
        conn.execute(sa.text("SELECT 1"))

    try:
        await asyncio.wait_for(db.run(ping), CHECK_TIMEOUT_S)
    except Exception as exc:  # noqa: BLE001 - any failure is the reason
        return Probe(
            False, f"{db.dialect} state database unreachable ({type(exc).__name__}) — check database.url"
        )
    return Probe(True, f"{db.dialect} state database answers")


async def readiness(app: web.Application) -> dict[str, Probe]:
    """Run every readiness check concurrently."""
    settings = app[SETTINGS]
    life = app[LIFECYCLE]
    model, store, database = await asyncio.gather(_model(app, settings), _store(settings), _database(app))
    if app.get(ASSISTANT) is not None:
        assistant = Probe(True, "built")
    else:
        assistant = Probe(False, life.assistant_error or "starting")
    shutdown = Probe(not life.draining, "shutting down" if life.draining else "accepting work")
    return {
        "model": model,
        "store": store,
        "database": database,
        "assistant": assistant,
        "shutdown": shutdown,
    }


async def readyz(request: web.Request) -> web.Response:
    """Readiness: 200 when every check passes, else 503; the body gives each check's reason."""
    checks = await readiness(request.app)
    ready = all(p.ok for p in checks.values())
    body = {"ready": ready, "checks": {name: {"ok": p.ok, "detail": p.detail} for name, p in checks.items()}}
    return web.json_response(body, status=200 if ready else 503)


# --- what the OpenAPI document declares for them -------------------------------------------------
_CHECK: Schema = {
    "type": "object",
    "required": ["ok", "detail"],
    "properties": {"ok": {"type": "boolean"}, "detail": {"type": "string", "description": "Why, in words."}},
}
_CHECKS = ("model", "store", "database", "assistant", "shutdown")
READINESS: Schema = {
    "type": "object",
    "required": ["ready", "checks"],
    "properties": {
        "ready": {"type": "boolean", "description": "Whether every check passed."},
        "checks": {
            "type": "object",
            "required": list(_CHECKS),
            "properties": {name: ref("Check") for name in _CHECKS},
        },
    },
}
HEALTHZ = Operation(
    "GET",
    "/healthz",
    "Liveness: the process is up and serving HTTP.",
    ok("Alive.", {"type": "object", "required": ["status"], "properties": {"status": {"const": "ok"}}}),
    public=True,
)
READYZ = Operation(
    "GET",
    "/readyz",
    "Readiness: whether every check (model, store, database, assistant, shutdown) passes now.",
    ok("Ready: every check passed.", ref("Readiness")),
    public=True,
    responses={
        503: {
            "description": "Not ready: the failing checks say why.",
            "content": json_content(ref("Readiness")),
        }
    },
    schemas={"Readiness": READINESS, "Check": _CHECK},
)
METRICS = Operation(
    "GET",
    "/metrics",
    "Every Hearth metric in Prometheus's text exposition format.",
    text_ok("Prometheus text format 0.0.4."),
    public=True,
)


def mount(app: web.Application) -> None:
    """Route /healthz, /readyz and /metrics and declare them in the OpenAPI document."""
    expose(app, HEALTHZ, healthz)
    expose(app, READYZ, readyz)
    expose(app, METRICS, metrics_handler)
