"""The aiohttp application of `hearth serve`.

``create_app(settings)`` builds the app; the assistant (models, stores) is opened and closed in one
``cleanup_ctx`` generator. Surfaces add their routes with a *mount* function registered in
``MOUNTS``: ``mount(app, settings) -> None``.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from aiohttp import web

from core.assistant import Assistant
from core.config import Settings

log = logging.getLogger(__name__)

SETTINGS = web.AppKey("settings", Settings)
ASSISTANT = web.AppKey("assistant", Assistant)

Mount = Callable[[web.Application, Settings], None]
# "module:function" of each surface's mount; a mount returns at once when its surface is disabled.
MOUNTS: list[str] = [
    "bot.dingtalk.http:mount",
]


async def healthz(request: web.Request) -> web.Response:
    """Liveness: the process is up and serving HTTP."""
    return web.json_response({"status": "ok"})


def create_app(settings: Settings, *, assistant: Assistant | None = None) -> web.Application:
    """Build the `hearth serve` application; pass ``assistant`` to inject one (tests)."""
    app = web.Application(client_max_size=settings.server.max_body_bytes)
    app[SETTINGS] = settings

    async def assistant_ctx(app: web.Application) -> AsyncIterator[None]:
        owned = assistant is None
        app[ASSISTANT] = assistant if assistant is not None else build_assistant(settings)
        yield
        if owned:
            await app[ASSISTANT].aclose()

    app.cleanup_ctx.append(assistant_ctx)
    app.router.add_get("/healthz", healthz)
    for spec in MOUNTS:
        module, _, func = spec.partition(":")
        mount: Mount = getattr(importlib.import_module(module), func)
        mount(app, settings)
    return app


def build_assistant(settings: Settings) -> Assistant:
    """The assistant with every capability the settings enable."""
    from core.engine import build_assistant as build

    return build(settings)


def describe(app: web.Application) -> list[dict[str, Any]]:
    """Routes for logs and `--help` text."""
    return [{"method": r.method, "path": r.resource.canonical if r.resource else ""} for r in app.router.routes()]
