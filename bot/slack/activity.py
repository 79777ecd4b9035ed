"""Recent channel messages as short lines for a digest's ``inputs.chat`` (a ``ChatActivity`` provider).

::

    reader = SlackChatActivity.from_settings(settings)
    lines = await reader(["#eng", "C0123ABCD"], since)   # ["#eng · alice: shipped the fix", …]

Each channel is read with ``conversations.history`` (oldest first, capped per channel). A channel
that cannot be read (unknown, bot not invited, missing scope, rate limited past the retries)
becomes one note line for that channel: a digest run never fails because of chat history.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from datetime import datetime

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot import messages
from bot.slack.app import make_client
from bot.slack.errors import error_code
from bot.slack.inbound import field, plain_text
from core.config import Settings, SlackSettings
from core.digests.access import Readers

log = logging.getLogger(__name__)

MAX_MESSAGES = 200  # per channel and digest period
TEXT_CHARS = 200
PAGE = 200
_CHANNEL_ID = re.compile(r"^[CG][A-Z0-9]{6,20}$")
# Message subtypes that are still a person writing (everything else: joins, topic changes, bots, …).
_HUMAN_SUBTYPES = {None, "thread_broadcast", "file_share", "me_message"}
# Slack error code -> the note's reason (what to do about it).
_REASONS = {
    "channel_not_found": messages.SLACK_ACTIVITY_NOT_FOUND,
    "not_in_channel": messages.SLACK_ACTIVITY_NOT_IN_CHANNEL,
    "missing_scope": messages.SLACK_ACTIVITY_MISSING_SCOPE,
    "ratelimited": messages.SLACK_ACTIVITY_RATE_LIMITED,
}


class ChannelUnreadable(Exception):
    """A channel's history could not be read; ``code`` is Slack's error code."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


def short(text: str, limit: int = TEXT_CHARS) -> str:
    """One line of at most ``limit`` characters (whitespace collapsed, '…' when cut)."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def is_human(msg: Mapping[str, object], bot_user_id: str | None) -> bool:
    """True for a message a person wrote (not a bot, a join, a topic change, or Hearth itself)."""
    return (
        bool(msg.get("user"))
        and not msg.get("bot_id")
        and msg.get("subtype") in _HUMAN_SUBTYPES
        and msg.get("user") != bot_user_id
    )


class SlackChatActivity:
    """Reads recent human messages of Slack channels; names and users are resolved once and cached."""

    def __init__(
        self, settings: SlackSettings, *, client: AsyncWebClient | None = None, limit: int = MAX_MESSAGES
    ) -> None:
        self.client = client or make_client(settings)
        self.limit = limit
        self._channel_ids: dict[str, str] | None = None  # name -> id, from conversations.list
        self._users: dict[str, str] = {}
        self._bot_user_id: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> SlackChatActivity:
        """The reader for ``settings.slack`` (needs ``slack.bot_token``)."""
        return cls(settings.slack)

    async def __call__(self, channels: Sequence[str], since: datetime) -> list[str]:
        """Lines like ``#eng · alice: text`` for each channel since ``since``; a note line per failure."""
        if self._bot_user_id is None:
            try:
                self._bot_user_id = str((await self.client.auth_test()).get("user_id") or "")
            except SlackApiError as exc:
                log.warning(
                    "auth.test failed (%s); bot messages are told apart by bot_id only", error_code(exc)
                )
                self._bot_user_id = ""
        lines: list[str] = []
        for channel in channels:
            label = self._label(channel)
            try:
                channel_id = await self._resolve(channel)
                raw = await self._history(channel_id, since)
            except ChannelUnreadable as exc:
                reason = _REASONS.get(exc.code, messages.SLACK_ACTIVITY_FAILED).format(code=exc.code)
                log.warning("digest chat input: cannot read %s: %s", channel, exc.code)
                lines.append(messages.SLACK_ACTIVITY_NOTE.format(channel=label, reason=reason))
                continue
            for msg in raw:
                text = short(plain_text(field(msg, "text")))
                if text:
                    lines.append(f"{label} · {await self._user_name(str(msg['user']))}: {text}")
        return lines

    def _label(self, channel: str) -> str:
        """'#name' for a name, or for an id whose name is already known; else the id."""
        if not _CHANNEL_ID.match(channel):
            return "#" + channel.lstrip("#")
        names = {cid: name for name, cid in (self._channel_ids or {}).items()}
        return f"#{names[channel]}" if channel in names else channel

    async def readers(self, channel: str) -> Readers:
        """Who can read ``channel``: everyone for a public channel, else its members (for digest access)."""
        try:
            channel_id = await self._resolve(channel)
            resp = await self.client.conversations_info(channel=channel_id)
            info = resp.get("channel") or {}
            if not info.get("is_private") and not info.get("is_mpim") and not info.get("is_im"):
                return Readers(everyone=True)
            members: set[str] = set()
            cursor: str | None = None
            while True:
                page = await self.client.conversations_members(channel=channel_id, limit=PAGE, cursor=cursor)
                members.update(str(m) for m in page.get("members") or [])
                cursor = (page.get("response_metadata") or {}).get("next_cursor") or None
                if not cursor:
                    return Readers(members=frozenset(members))
        except ChannelUnreadable as exc:
            return Readers(unreadable=exc.code)
        except SlackApiError as exc:
            log.warning("digest access: cannot tell who reads %s: %s", channel, error_code(exc))
            return Readers(unreadable=error_code(exc))

    async def _resolve(self, channel: str) -> str:
        """A channel id for '#name', 'name' or an id."""
        if _CHANNEL_ID.match(channel):
            return channel
        name = channel.lstrip("#")
        if self._channel_ids is None or name not in self._channel_ids:
            self._channel_ids = await self._list_channels()
        if name not in self._channel_ids:
            raise ChannelUnreadable("channel_not_found")
        return self._channel_ids[name]

    async def _list_channels(self) -> dict[str, str]:
        """Every channel name the bot can see, paged through ``conversations.list``."""
        found: dict[str, str] = {}
        cursor: str | None = None
        while True:
            try:
                resp = await self.client.conversations_list(
                    types="public_channel,private_channel", exclude_archived=True, limit=PAGE, cursor=cursor
                )
            except SlackApiError as exc:
                raise ChannelUnreadable(error_code(exc)) from None
            for ch in resp.get("channels") or []:
                found[str(ch.get("name"))] = str(ch.get("id"))
            cursor = (resp.get("response_metadata") or {}).get("next_cursor") or None
            if not cursor:
                return found

    async def _history(self, channel_id: str, since: datetime) -> list[Mapping[str, object]]:
        """Human messages after ``since``, oldest first, at most ``self.limit``."""
        kept: list[Mapping[str, object]] = []
        cursor: str | None = None
        bot = self._bot_user_id or None
        while len(kept) < self.limit:
            try:
                resp = await self.client.conversations_history(
                    channel=channel_id,
                    oldest=f"{since.timestamp():.6f}",
                    limit=min(PAGE, self.limit),
                    cursor=cursor,
                )
            except SlackApiError as exc:
                raise ChannelUnreadable(error_code(exc)) from None
            kept.extend(m for m in resp.get("messages") or [] if is_human(m, bot))
            cursor = (resp.get("response_metadata") or {}).get("next_cursor") or None
            if not cursor or not resp.get("has_more", True):
                break
        # Pages come newest first: keep the newest ``limit``, then read them in order.
        return sorted(kept[: self.limit], key=lambda m: float(field(m, "ts") or 0))

    async def _user_name(self, user: str) -> str:
        """The person's display name (``users.info``, cached); the id when it cannot be read."""
        if user not in self._users:
            name = user
            try:
                info = (await self.client.users_info(user=user)).get("user") or {}
                profile = info.get("profile") or {}
                name = str(profile.get("display_name") or info.get("real_name") or info.get("name") or user)
            except SlackApiError as exc:
                log.info("users.info failed for %s (%s); showing the id", user, error_code(exc))
            self._users[user] = name
        return self._users[user]
