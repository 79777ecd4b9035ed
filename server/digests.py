"""Digests inside `hearth serve`: the scheduler service with the surfaces' posters wired in.

``mount`` adds one ``cleanup_ctx``: it builds the posters that are configured (Slack when a bot
token is set, DingTalk when webhooks are named) and the chat-activity reader for ``inputs.chat``
(Slack channel history, when a bot token is set), starts the :class:`DigestService` (leader
election; the leader runs APScheduler) and stops it on shutdown. Chat surfaces reach the service
as ``app[DIGESTS]`` for `/digest` commands (``core.digests.commands.handle_command``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from bot.dingtalk.poster import DingTalkPoster
from bot.slack.activity import SlackChatActivity
from bot.slack.poster import SlackPoster
from core.config import Settings
from core.contracts import Poster
from core.digests.inputs import ChatActivity
from core.digests.service import DigestService
from core.services import Services

log = logging.getLogger(__name__)

RETRY_START_S = 2.0
RETRY_MAX_S = 60.0

DIGESTS = web.AppKey("digests", DigestService)


def build_posters(settings: Settings) -> dict[str, Poster]:
    """A poster for every surface that is configured (Slack: a bot token; DingTalk: named webhooks)."""
    posters: dict[str, Poster] = {}
    if settings.slack.bot_token is not None:
        posters["slack"] = SlackPoster.from_settings(settings)
    if settings.dingtalk.webhooks:
        posters["dingtalk"] = DingTalkPoster(settings.dingtalk)
    return posters


def build_chat_activity(settings: Settings) -> ChatActivity | None:
    """The reader of ``inputs.chat``: Slack channel history when a Slack bot token is set."""
    if settings.slack.bot_token is None:
        return None
    return SlackChatActivity.from_settings(settings)


async def close_posters(posters: dict[str, Poster]) -> None:
    """Close every poster that holds resources (flushing queued posts)."""
    for poster in posters.values():
        close = getattr(poster, "aclose", None)
        if close is not None:
            try:
                await close()
            except Exception:
                log.warning("closing the %s poster failed", poster.surface, exc_info=True)


async def _start(service: DigestService) -> None:
    """Start the service, retrying with backoff while the state database is unreachable."""
    delay = RETRY_START_S
    while True:
        try:
            await service.start()
        except Exception as exc:
            log.error("digests could not start (retrying in %.0fs): %s", delay, exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX_S)
            continue
        log.info(
            "digests: %d scheduled, posting to %s",
            len(service.specs),
            ", ".join(service.posters) or "nowhere",
        )
        return


def mount(app: web.Application, services: Services) -> None:
    """Run the digest scheduler for the app's lifetime."""
    settings = services.settings

    async def digests_ctx(app: web.Application) -> AsyncIterator[None]:
        posters = build_posters(settings)
        # The engine may still be loading (serve retries it in the background): resolve it per run.
        service = DigestService(
            settings,
            services.engine,
            posters,
            services.db,
            chat_activity=build_chat_activity(settings),
            summarise=services.intake.run,  # summaries are audited and counted like every other answer
            audit=services.audit.record if services.audit is not None else None,
        )
        try:
            service.check_templates()  # a configuration mistake: refuse to start, naming the field
        except BaseException:
            await close_posters(posters)
            raise
        app[DIGESTS] = service
        # A database that is down must not stop `hearth serve` (/readyz reports it): retry the start.
        starter = asyncio.create_task(_start(service), name="hearth-digests-start")
        yield
        starter.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await starter
        await service.stop()
        await close_posters(posters)

    app.cleanup_ctx.append(digests_ctx)
