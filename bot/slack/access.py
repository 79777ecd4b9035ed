"""Who may read what: a Slack user's ACL tokens (user, configured user groups, channel)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.identity import acl_for, audience_of
from bot.slack.errors import error_code
from core.config import SlackSettings

log = logging.getLogger(__name__)


class SlackAccess:
    """Maps a Slack user to ACL tokens; user-group members are fetched with ``usergroups.users.list``.

    Only the groups named in ``slack.user_groups`` are looked up, each cached for ``ttl_s``. A failed
    lookup grants nothing from that group (fail closed) and is retried on the next question.
    """

    def __init__(
        self,
        settings: SlackSettings,
        client: AsyncWebClient,
        *,
        ttl_s: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.client = client
        self.ttl_s = ttl_s
        self.clock = clock
        self._members: dict[str, tuple[float, frozenset[str]]] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def _group_members(self, group: str) -> frozenset[str]:
        cached = self._members.get(group)
        if cached is not None and self.clock() - cached[0] < self.ttl_s:
            return cached[1]
        lock = self._locks.setdefault(group, asyncio.Lock())
        async with lock:
            cached = self._members.get(group)
            if cached is not None and self.clock() - cached[0] < self.ttl_s:
                return cached[1]
            try:
                resp = await self.client.usergroups_users_list(usergroup=group)
            except SlackApiError as exc:
                log.warning(
                    "usergroups.users.list failed for %s (%s); granting nothing from it",
                    group,
                    error_code(exc),
                )
                return frozenset()
            members = frozenset(str(u) for u in resp.get("users") or [])
            self._members[group] = (self.clock(), members)
            return members

    async def groups_of(self, user_id: str) -> list[str]:
        """The configured user groups ``user_id`` belongs to."""
        groups = list(self.settings.user_groups)
        memberships = await asyncio.gather(*(self._group_members(g) for g in groups))
        return [g for g, members in zip(groups, memberships, strict=True) if user_id in members]

    def audience(self, channel: str | None) -> frozenset[str] | None:
        """Who sees an answer posted in ``channel``: its grants; None in a direct message (``D…``)."""
        private = channel is None or channel.startswith("D")
        s = self.settings
        return audience_of(channel, private=private, default=s.default_acl, channels_map=s.channels)

    async def acl(self, user_id: str, channel: str | None) -> frozenset[str]:
        """The tokens ``user_id`` holds when asking in ``channel``."""
        s = self.settings
        return acl_for(
            "slack",
            user_id,
            groups=await self.groups_of(user_id),
            channel=channel,
            default=s.default_acl,
            users=s.users,
            groups_map=s.user_groups,
            channels_map=s.channels,
        )
