"""Digests inside `hearth serve`: the scheduler service with the surfaces' posters wired in.

``mount`` adds one ``cleanup_ctx``: it builds the posters that are configured (Slack when a bot
token is set, DingTalk when webhooks are named), starts the :class:`DigestService` (leader
election; the leader runs APScheduler) and stops it on shutdown. Chat surfaces reach the service
as ``app[DIGESTS]`` for `/digest` commands (``core.digests.commands.handle_command``).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from core.config import Settings
from core.contracts import Poster
from core.db import Database
from core.digests.service import DigestService

log = logging.getLogger(__name__)

DIGESTS = web.AppKey("digests", DigestService)

# surface -> (module, class) of its Poster; each is optional until its surface is installed.
POSTERS: dict[str, tuple[str, str]] = {
    "slack": ("bot.slack.poster", "SlackPoster"),
    "dingtalk": ("bot.dingtalk.poster", "DingTalkPoster"),
}


def _configured(settings: Settings, surface: str) -> bool:
    if surface == "slack":
        return settings.slack.bot_token is not None
    if surface == "dingtalk":
        return bool(settings.dingtalk.webhooks)
    return False


def build_posters(settings: Settings) -> dict[str, Poster]:
    """A poster for every surface that is configured and installed."""
    posters: dict[str, Poster] = {}
    for surface, (module, name) in POSTERS.items():
        if not _configured(settings, surface):
            continue
        try:
            cls: Any = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError):
            log.warning("digests cannot post to %s: %s.%s is not installed", surface, module, name)
            continue
        factory = getattr(cls, "from_settings", None)
        posters[surface] = factory(settings) if factory is not None else cls(getattr(settings, surface))
    return posters


async def close_posters(posters: dict[str, Poster]) -> None:
    """Close every poster that holds resources (flushing queued posts)."""
    for poster in posters.values():
        close = getattr(poster, "aclose", None)
        if close is not None:
            try:
                await close()
            except Exception:
                log.warning("closing the %s poster failed", poster.surface, exc_info=True)


def mount(app: web.Application, settings: Settings) -> None:
    """Run the digest scheduler for the app's lifetime."""
    from server.app import ASSISTANT

    async def digests_ctx(app: web.Application) -> AsyncIterator[None]:
        posters = build_posters(settings)
        db = Database(settings.database_url)
        # The engine may still be loading (serve retries it in the background): resolve it per run.
        service = DigestService(settings, lambda: app.get(ASSISTANT), posters, db)
        try:
            await service.start()
        except BaseException:
            await close_posters(posters)
            await db.aclose()
            raise
        app[DIGESTS] = service
        log.info("digests: %d scheduled, posting to %s", len(service.specs), ", ".join(posters) or "nowhere")
        yield
        await service.stop()
        await close_posters(posters)
        await db.aclose()

    app.cleanup_ctx.append(digests_ctx)
