"""The Slack bot inside `hearth serve`: ``POST /slack/events`` (HTTP mode) or a Socket Mode connection.

``mount(app, services)`` is listed in ``server.app.MOUNTS``; it returns at once unless
``slack.enabled``. The bot and (in Socket Mode) the WebSocket are opened and closed in one
``cleanup_ctx`` generator; the database and the intake are the server's (``core.services``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Mapping

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response
from slack_bolt.request.async_request import AsyncBoltRequest

from bot.slack.app import SlackBot, check_settings
from core.services import Services

log = logging.getLogger(__name__)

SLACK_BOT = web.AppKey("slack_bot", SlackBot)
PATH = "/slack/events"
TIMESTAMP_HEADER = "X-Slack-Request-Timestamp"
_TIMESTAMP = re.compile(r"^[0-9]{1,12}$")  # seconds since the epoch, as Slack sends it


def mount(app: web.Application, services: Services) -> None:
    """Add the Slack bot to `hearth serve` when ``slack.enabled``."""
    settings = services.settings
    if not settings.slack.enabled:
        return
    check_settings(settings.slack)
    app.cleanup_ctx.append(lambda app: _slack_ctx(app, services))
    if settings.slack.mode == "http":
        add_routes(app)


def add_routes(app: web.Application) -> None:
    """Route Slack's Events API, slash commands and interactivity to the bot in ``app[SLACK_BOT]``."""
    app.router.add_post(PATH, handle)


async def _slack_ctx(app: web.Application, services: Services) -> AsyncIterator[None]:
    settings = services.settings
    bot = SlackBot(settings, services.intake, services.db, digests=services.digests)
    await bot.start()
    app[SLACK_BOT] = bot
    socket = None
    if settings.slack.mode == "socket":
        from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler

        assert settings.slack.app_token is not None
        socket = AsyncSocketModeHandler(bot.app, settings.slack.app_token.get_secret_value())
        await socket.connect_async()  # type: ignore[no-untyped-call]
        log.info("slack: connected in Socket Mode")
    else:
        log.info("slack: listening for events at %s", PATH)
    try:
        yield
    finally:
        if socket is not None:
            await socket.close_async()  # type: ignore[no-untyped-call]
        await bot.aclose(settings.server.shutdown_timeout_s)


def payload_problem(body: object) -> str | None:
    """Why a parsed Slack payload is malformed, or None when its shape is one Slack sends."""
    if not isinstance(body, Mapping) or not body:
        return "empty or non-object payload"
    if "command" in body:
        missing = [k for k in ("user_id", "channel_id", "command") if not body.get(k)]
        return f"slash command without {', '.join(missing)}" if missing else None
    kind = body.get("type")
    if kind == "event_callback":
        event = body.get("event")
        if not isinstance(event, Mapping) or not isinstance(event.get("type"), str):
            return "event_callback without an event"
        if not isinstance(body.get("event_id"), str):
            return "event_callback without an event_id"
        return None
    if kind == "block_actions":
        if not isinstance(body.get("user"), Mapping) or not isinstance(body.get("actions"), list):
            return "block_actions without user or actions"
        return None
    if (
        kind
        in (
            "url_verification",
            "app_rate_limited",
            "view_submission",
            "view_closed",
            "shortcut",
            "message_action",
            "block_suggestion",
        )
        or "ssl_check" in body
    ):
        return None
    return "unrecognised payload type"


async def handle(request: web.Request) -> web.Response:
    """Translate the aiohttp request for bolt and bolt's response back; 401 forged, 400 malformed."""
    bot = request.app[SLACK_BOT]
    if not _TIMESTAMP.match(request.headers.get(TIMESTAMP_HEADER, "0")):
        return _rejected(request)  # not a number of seconds: no signature can check out
    raw = await request.read()
    try:
        body = raw.decode("utf-8")
        bolt_request = AsyncBoltRequest(body=body, query=request.query_string, headers=dict(request.headers))
        problem = payload_problem(bolt_request.body)
    except (UnicodeDecodeError, ValueError, TypeError, AttributeError, KeyError) as exc:
        bolt_request, problem = None, f"unparseable body ({type(exc).__name__})"
    if problem is not None:
        # Say 401 rather than 400 to someone who cannot sign: malformed-ness is no one else's business.
        timestamp = request.headers.get(TIMESTAMP_HEADER, "0")
        signature = request.headers.get("X-Slack-Signature", "")
        if not bot.verifier.is_valid(raw, timestamp, signature):
            return _rejected(request)
        log.warning("slack: malformed request from %s: %s", request.remote, problem)
        return web.json_response({"error": "malformed payload"}, status=400)
    assert bolt_request is not None
    response = await bot.app.async_dispatch(bolt_request)
    if response.status == 401:
        return _rejected(request)
    if response.status == 404 and isinstance(bolt_request.body.get("event"), Mapping):
        # An event type nobody listens to: acknowledge it so Slack does not retry it.
        return web.Response(status=200)
    return await to_aiohttp_response(response)


def _rejected(request: web.Request) -> web.Response:
    log.warning(
        "slack: rejected a request from %s with an invalid or stale signature (timestamp %s)",
        request.remote,
        request.headers.get(TIMESTAMP_HEADER, "-")[:32],
    )
    return web.json_response({"error": "invalid request signature"}, status=401)
