"""Mounts the DingTalk bot in `hearth serve`: ``POST /dingtalk/callback`` (HTTP mode) or the Stream client.

``mount(app, services)`` is listed in ``server.app.MOUNTS``; it returns at once unless
``dingtalk.enabled``. The bot, its HTTP session and (in Stream mode) the WebSocket client are
opened and closed in one ``cleanup_ctx`` generator.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

from bot.dingtalk.bot import DingTalkBot
from bot.dingtalk.message import Incoming
from bot.dingtalk.openapi import OpenAPI
from bot.dingtalk.poster import DingTalkPoster
from bot.dingtalk.reply import Replier
from bot.dingtalk.signing import CallbackRejected, UsedSignatures, verify_callback
from bot.dingtalk.stream import StreamClient
from core.config import Settings
from core.errors import ConfigError, InputError
from core.jsontypes import load_json
from core.services import Services

log = logging.getLogger(__name__)

BOT = web.AppKey("dingtalk_bot", DingTalkBot)
POSTER = web.AppKey("dingtalk_poster", DingTalkPoster)
STREAM = web.AppKey("dingtalk_stream", StreamClient)
SIGNATURES = web.AppKey("dingtalk_signatures", UsedSignatures)


def check_settings(settings: Settings) -> None:
    """Fail at start-up, naming the key, when the configured mode cannot work."""
    cfg = settings.dingtalk
    if not cfg.client_secret:
        raise ConfigError(
            f"dingtalk.mode is '{cfg.mode}' but dingtalk.client_secret is not set — "
            "copy the app secret from the DingTalk developer console."
        )
    if cfg.mode == "stream" and not cfg.client_id:
        raise ConfigError("dingtalk.mode is 'stream' but dingtalk.client_id is not set.")
    if cfg.fallback_webhook and cfg.fallback_webhook not in cfg.webhooks:
        known = ", ".join(sorted(cfg.webhooks)) or "(none configured)"
        raise ConfigError(
            f"Unknown DingTalk webhook '{cfg.fallback_webhook}' in dingtalk.fallback_webhook; "
            f"available: {known}"
        )


def mount(app: web.Application, services: Services) -> None:
    """Add the DingTalk bot to ``app`` when it is enabled."""
    settings = services.settings
    if not settings.dingtalk.enabled:
        return
    check_settings(settings)
    app.cleanup_ctx.append(lambda app: _bot_ctx(app, services))
    if settings.dingtalk.mode == "http":
        app.router.add_post("/dingtalk/callback", callback)
    log.info("DingTalk bot mounted in %s mode", settings.dingtalk.mode)


async def _bot_ctx(app: web.Application, services: Services) -> AsyncIterator[None]:
    """Open the bot's session and transport; on shutdown finish or cancel its work."""
    settings = services.settings
    cfg = settings.dingtalk
    session = aiohttp.ClientSession()
    poster = DingTalkPoster(cfg, session=session)
    api = OpenAPI(session, cfg) if cfg.client_id and cfg.client_secret else None
    replier = Replier(session, cfg, api=api, poster=poster)
    bot = DingTalkBot(
        settings, services.intake, db=services.db, replier=replier, api=api, digests=services.digests
    )
    app[BOT] = bot
    app[POSTER] = poster
    app[SIGNATURES] = UsedSignatures(services.db)
    bot.start()
    stream = None
    if cfg.mode == "stream":
        stream = StreamClient(cfg, bot.dispatch)
        app[STREAM] = stream
        stream.start_background()
    try:
        yield
    finally:
        if stream is not None:
            await stream.aclose()
        await bot.aclose(settings.server.shutdown_timeout_s)
        await poster.aclose(min(5.0, settings.server.shutdown_timeout_s))
        await session.close()


async def callback(request: web.Request) -> web.Response:
    """The outgoing-robot endpoint: verify, acknowledge at once, answer in the background.

    A signature is accepted once (DingTalk's covers only the timestamp, so a captured one would
    sign any body): a second request with the same (timestamp, sign) is refused as a replay.
    """
    secret = request.app[BOT].config.client_secret
    assert secret is not None  # check_settings
    timestamp, signature = request.headers.get("timestamp"), request.headers.get("sign")
    try:
        verify_callback(timestamp, signature, secret.get_secret_value(), now_ms=int(time.time() * 1000))
    except CallbackRejected as exc:
        log.warning("DingTalk callback from %s rejected: %s", request.remote, exc)
        return web.json_response({"error": "invalid signature"}, status=401)
    assert timestamp is not None and signature is not None  # verify_callback
    if not await request.app[SIGNATURES].first_use(timestamp, signature):
        log.warning(
            "DingTalk callback from %s rejected: its signature (timestamp %s) was already used — a replay",
            request.remote,
            timestamp,
        )
        return web.json_response({"error": "invalid signature"}, status=401)
    try:
        payload = load_json(await request.read())  # deep nesting, huge numbers: InputError, a 400
        incoming = Incoming.from_payload(payload)
    except (ValueError, UnicodeDecodeError):
        log.warning("DingTalk callback from %s: the body is not JSON", request.remote)
        return web.json_response({"error": "The body must be a JSON object."}, status=400)
    except InputError as exc:
        log.warning("DingTalk callback from %s: %s", request.remote, exc)
        return web.json_response({"error": str(exc)}, status=400)
    request.app[BOT].dispatch(incoming)
    return web.json_response({})
