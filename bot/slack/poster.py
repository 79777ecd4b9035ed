"""Posting finished text to Slack (digests, owner notices): a :class:`core.contracts.Poster`.

::

    poster = SlackPoster.from_settings(settings)
    ts = await poster.post("#eng", "*Weekly digest*\\n…")   # a channel name or id, or a user id (DM)
"""

from __future__ import annotations

from collections.abc import Iterable

from slack_sdk.web.async_client import AsyncWebClient

from bot.slack import render
from bot.slack.app import make_client
from core.config import Settings, SlackSettings


class SlackPoster:
    """Posts Markdown as one or more Slack messages (split at Slack's limits, links kept inert)."""

    surface = "slack"

    def __init__(
        self,
        settings: SlackSettings,
        *,
        client: AsyncWebClient | None = None,
        allowed_links: Iterable[str] = (),
    ) -> None:
        self.client = client or make_client(settings)
        self.allowed_links = set(allowed_links)

    @classmethod
    def from_settings(cls, settings: Settings) -> SlackPoster:
        """The poster for ``settings.slack`` (needs ``slack.bot_token``)."""
        return cls(settings.slack)

    async def post(self, destination: str, markdown: str) -> str:
        """Post to ``destination``; return the first message's ts (API errors propagate)."""
        parts = render.split_text(render.to_mrkdwn(markdown, self.allowed_links))
        first = ""
        for part in parts:
            resp = await self.client.chat_postMessage(
                channel=destination,
                text=part,
                blocks=[render.section(part)],
                thread_ts=first or None,  # a long digest continues in its own thread
                unfurl_links=False,
                unfurl_media=False,
            )
            first = first or str(resp["ts"])
        return first

    async def aclose(self) -> None:
        """Nothing to release: the client opens a session per call."""
