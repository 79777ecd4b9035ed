"""Replies to a message: through its sessionWebhook, or proactively once that has expired.

A sessionWebhook comes in the message body, so it is only posted to when it points at one of
``dingtalk.session_webhook_origins`` (DingTalk's API hosts, over https): an answer never goes to a
URL someone wrote into a message.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from urllib.parse import urlsplit

import aiohttp

from bot.dingtalk.message import Incoming, Payload
from bot.dingtalk.openapi import DingTalkAPIError, OpenAPI, send_json
from bot.dingtalk.poster import DingTalkPoster
from core.config import DingTalkSettings

log = logging.getLogger(__name__)


class Replier:
    """Sends Markdown into the conversation a message came from."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        settings: DingTalkSettings,
        *,
        api: OpenAPI | None = None,
        poster: DingTalkPoster | None = None,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.session = session
        self.settings = settings
        self.api = api
        self.poster = poster
        self.wall = wall
        self.timeout = aiohttp.ClientTimeout(total=settings.request_timeout_s)
        # A configured entry that is not a URL matches nothing.
        self.origins = frozenset(o for o in map(_origin, settings.session_webhook_origins) if o)

    def allowed(self, webhook: str) -> bool:
        """Whether ``webhook`` is on one of the configured DingTalk origins."""
        origin = _origin(webhook)
        return bool(origin) and origin in self.origins

    async def markdown(self, incoming: Incoming, title: str, text: str) -> bool:
        """Deliver ``text``; return False (after a log line) when no route is left."""
        if incoming.session_webhook and not self.allowed(incoming.session_webhook):
            log.warning(
                "DingTalk message %s names a sessionWebhook outside dingtalk.session_webhook_origins "
                "(%s); not posting there, trying a proactive message",
                incoming.msg_id,
                _origin(incoming.session_webhook) or "not a URL",
            )
        elif incoming.session_webhook and not self._expired(incoming):
            try:
                await self._session_post(incoming, title, text)
                return True
            except DingTalkAPIError as exc:
                log.warning(
                    "DingTalk sessionWebhook reply to message %s failed: %s; trying a proactive message",
                    incoming.msg_id,
                    exc,
                )
        else:
            log.warning(
                "DingTalk sessionWebhook of message %s in conversation %s is %s; trying a proactive message",
                incoming.msg_id,
                incoming.conversation_id,
                "expired" if incoming.session_webhook else "missing",
            )
        return await self._fallback(incoming, title, text)

    def _expired(self, incoming: Incoming) -> bool:
        """Whether the sessionWebhook's expiry time has passed (with a few seconds of margin)."""
        if incoming.webhook_expires_ms is None:
            return False
        return self.wall() * 1000 >= incoming.webhook_expires_ms - 5000

    async def _session_post(self, incoming: Incoming, title: str, text: str) -> None:
        """POST a markdown message to the sessionWebhook."""
        assert incoming.session_webhook is not None
        body: Payload = {"msgtype": "markdown", "markdown": {"title": title, "text": text}}
        if incoming.is_group:
            body["at"] = {"atUserIds": [incoming.staff_id]}
        status, raw, data = await send_json(
            self.session,
            "POST",
            incoming.session_webhook,
            body,
            client_timeout=self.timeout,
            what="the sessionWebhook",
        )
        errcode = data.get("errcode", 0)
        code = errcode if isinstance(errcode, (int, str)) else None
        if status >= 300 or code not in (0, None):
            raise DingTalkAPIError(
                f"the sessionWebhook answered HTTP {status}, errcode {code}: {raw[:200]}", code
            )

    async def _fallback(self, incoming: Incoming, title: str, text: str) -> bool:
        """A proactive message as the robot (robot_code) or through the fallback webhook."""
        if self.api is not None and (self.settings.robot_code or incoming.robot_code):
            try:
                await self.api.send_markdown(incoming, title, text)
                return True
            except DingTalkAPIError as exc:
                log.error("DingTalk proactive reply to message %s failed: %s", incoming.msg_id, exc)
        if self.poster is not None and self.settings.fallback_webhook:
            try:
                await self.poster.post(self.settings.fallback_webhook, text)
                return True
            except Exception as exc:  # noqa: BLE001 — the poster logged the detail; keep the bot alive
                log.error(
                    "DingTalk fallback webhook '%s' failed for message %s: %s",
                    self.settings.fallback_webhook,
                    incoming.msg_id,
                    exc,
                )
                return False
        log.error(
            "DingTalk reply to message %s in conversation %s was not delivered: set dingtalk.robot_code "
            "(with client_id/client_secret) or dingtalk.fallback_webhook to reply after the sessionWebhook "
            "expires",
            incoming.msg_id,
            incoming.conversation_id,
        )
        return False


def _origin(url: str) -> str:
    """``scheme://host[:port]`` of ``url``, lower-cased, the default port left out ('' when not a URL)."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return ""
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.username or parts.password:
        return ""
    default = {"http": 80, "https": 443}[parts.scheme]
    suffix = f":{port}" if port is not None and port != default else ""
    return f"{parts.scheme}://{parts.hostname.lower()}{suffix}"
