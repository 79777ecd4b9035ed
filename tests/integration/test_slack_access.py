"""User-group membership through the real slack_sdk: cached with a TTL, failing closed."""

from __future__ import annotations

from bot.slack.access import SlackAccess
from bot.slack.app import make_client
from core.config import SlackSettings
from tests.fixtures.slack_api import slack_section


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_group_lookups_are_cached_then_refreshed(slack_api):
    settings = SlackSettings(**slack_section(slack_api, user_groups={"S1": ["group:ops"]}))
    clock = Clock()
    access = SlackAccess(settings, make_client(settings), ttl_s=60, clock=clock)
    slack_api.usergroups["S1"] = ["U1"]
    assert "group:ops" in await access.acl("U1", None)
    slack_api.usergroups["S1"] = []  # U1 leaves the group
    assert "group:ops" in await access.acl("U1", None)  # still cached
    clock.now = 61
    assert "group:ops" not in await access.acl("U1", None)
    assert len(slack_api.of("usergroups.users.list")) == 2


async def test_failed_lookup_grants_nothing(slack_api):
    settings = SlackSettings(**slack_section(slack_api, user_groups={"S9": ["group:secret"]}))
    access = SlackAccess(settings, make_client(settings))
    slack_api.fail("usergroups.users.list", "missing_scope")
    acl = await access.acl("U1", "C1")
    assert acl == frozenset({"public", "user:slack:U1"})
