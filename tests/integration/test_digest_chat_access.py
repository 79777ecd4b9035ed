"""A digest of chat channel X posted into Y only when everyone who can see Y could see X.

Through the real parts: `/digest create … chat=#x post_to=slack:#y` (the chat command), the digest
service, and the Slack chat reader asking the fake Slack Web API (real slack_sdk, loopback) who is
in each channel; checked again before each run.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.slack.activity import SlackChatActivity
from core.assistant import Assistant
from core.db import Database
from core.digests.commands import handle_command
from core.digests.service import DigestService
from core.errors import DigestError
from core.intake import Intake
from core.llm.fake import FakeBackend
from core.llm.router import Router
from tests.fixtures.core import make_settings
from tests.fixtures.slack_api import FakeSlackApi, slack_section


def channels(api: FakeSlackApi) -> None:
    api.add_channel("hr", "C0HR00001", private=True, members=["U1", "U2", "UBOT"])
    api.add_channel("hr-leads", "C0HRLEAD1", private=True, members=["U1", "UBOT"])
    api.add_channel("ops", "C0OPS0001", private=True, members=["U1", "U3", "UBOT"])
    api.add_channel("general", "C0GENERAL", members=["U1", "U2", "U3", "UBOT"])
    api.add_channel("eng", "C0ENG0001", members=["U1", "U3", "UBOT"])
    api.add_channel("secret", "C0SECRET1", private=True, member=False, members=["U7"])


@pytest.fixture
async def service(tmp_path: Path, slack_api: FakeSlackApi) -> AsyncIterator[DigestService]:
    channels(slack_api)
    settings = make_settings(
        tmp_path,
        slack=slack_section(slack_api),
        dingtalk={"webhooks": {"team": {"url": "https://oapi.dingtalk.com/robot/send?access_token=t"}}},
        digest_admins=["UADMIN"],
    )
    assistant = Assistant(
        settings, Router(local=FakeBackend(reply="A summary."), remote=None, routing=settings.llm.routing)
    )
    db = Database(settings.database_url)
    digests = DigestService(
        settings,
        assistant,
        {},
        db,
        chat_activity=SlackChatActivity(settings.slack),
        summarise=Intake(settings, lambda: assistant).run,
    )
    await digests.open()
    yield digests
    await assistant.aclose()
    await db.aclose()


async def create(service: DigestService, chat: str, post_to: str, user: str = "U1", name: str = "d") -> str:
    return await handle_command(service, f'create {name} "0 9 * * MON" post_to={post_to} chat={chat}', user)


@pytest.mark.parametrize(
    ("chat", "post_to", "refused"),
    [
        ("#hr", "slack:#general", "the channel is private and the destination is public"),
        ("#hr", "slack:#ops", "1 member(s) there are not in the channel"),
        ("#hr", "dingtalk:team", "not Slack members Hearth can check"),
        ("#eng", "dingtalk:team", "not members of the Slack workspace"),
        ("#hr", "slack:#hr-leads,slack:#general", "may not be posted to slack:#general"),
    ],
    ids=[
        "private-into-public",
        "private-into-wider",
        "private-into-dingtalk",
        "public-into-dingtalk",
        "one-of-two",
    ],
)
async def test_chat_that_would_reach_people_who_cannot_see_it_is_refused(
    service: DigestService, chat: str, post_to: str, refused: str
) -> None:
    reply = await create(service, chat, post_to)
    assert reply.startswith("This digest cannot post there:") and refused in reply, reply
    assert "d" not in service.specs


@pytest.mark.parametrize(
    ("chat", "post_to"),
    [
        ("#hr", "slack:#hr"),  # into the channel itself
        ("#hr", "slack:#hr-leads"),  # everyone in #hr-leads is in #hr
        ("#eng", "slack:#general"),  # a public channel: the whole workspace reads it
        ("#secret", "slack:#general"),  # Hearth cannot read it: nothing of it is posted
    ],
    ids=["same", "narrower", "public", "unreadable"],
)
async def test_chat_everyone_there_could_see_is_allowed(
    service: DigestService, chat: str, post_to: str
) -> None:
    reply = await create(service, chat, post_to)
    assert reply.startswith("Created digest 'd'"), reply


async def test_a_digest_admin_may_post_chat_anywhere(service: DigestService) -> None:
    reply = await create(service, "#hr", "slack:#general", user="UADMIN")
    assert reply.startswith("Created digest 'd'"), reply
    await service.run("d", dry_run=True)  # and it runs: the admin answers for it


async def test_checked_again_before_each_run(service: DigestService, slack_api: FakeSlackApi) -> None:
    assert (await create(service, "#hr", "slack:#hr-leads")).startswith("Created")
    run = await service.run("d", dry_run=True)
    assert run is not None and run.text
    slack_api.members["C0HRLEAD1"].append("U3")  # someone outside #hr joins #hr-leads
    with pytest.raises(DigestError, match="1 member\\(s\\) there are not in the channel"):
        await service.run("d", dry_run=True)
    assert slack_api.of("conversations.members")  # asked Slack, not a cache


async def test_a_hearth_yaml_digest_is_held_to_the_rule(tmp_path: Path, slack_api: FakeSlackApi) -> None:
    channels(slack_api)
    spec = {
        "name": "leak",
        "schedule": "0 9 * * MON",
        "post_to": [{"slack": "#general"}],
        "inputs": {"chat": {"channels": ["#hr"]}},
    }
    settings = make_settings(tmp_path, slack=slack_section(slack_api), digests=[spec])
    db = Database(settings.database_url)
    digests = DigestService(settings, None, {}, db, chat_activity=SlackChatActivity(settings.slack))
    try:
        await digests.open()
        with pytest.raises(DigestError, match="may not be posted to slack:#general"):
            await digests.run("leak", dry_run=True)
    finally:
        await db.aclose()


async def test_without_a_reader_that_can_tell_cross_channel_chat_is_refused(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)

    async def lines(channels, since):  # a chat-history reader that cannot say who reads a channel
        return []

    db = Database(settings.database_url)
    digests = DigestService(settings, None, {}, db, chat_activity=lines)
    try:
        await digests.open()
        reply = await create(digests, "#hr", "slack:#general")
        assert "no chat reader can tell who reads the channel" in reply
        assert (await create(digests, "#hr", "slack:#hr")).startswith("Created")
    finally:
        await db.aclose()
