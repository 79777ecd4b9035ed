"""A digest's ``inputs.chat`` read from Slack channel history: the real slack_sdk against the fake Web API."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bot import messages
from bot.slack import activity
from bot.slack.activity import SlackChatActivity
from core.assistant import Assistant
from core.db import Database
from core.digests.service import DigestService
from core.intake import Intake
from core.llm.fake import FakeBackend
from core.llm.router import Router
from server.digests import build_chat_activity
from tests.fixtures.core import make_settings
from tests.fixtures.slack_api import BOT_ID, BOT_USER_ID, FakeSlackApi, slack_section

MONDAY_9 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)  # the run's fire time; its period starts a week earlier
SPEC = {"name": "eng-weekly", "schedule": "0 9 * * MON", "post_to": [{"slack": "#eng"}]}


def ts(at: float, n: int) -> str:
    return f"{int(at)}.{n:06d}"


def seed(api: FakeSlackApi) -> None:
    """#eng with recent human messages, an old one, a bot post, a join; other channels around it."""
    for i in range(5):
        api.add_channel(f"other-{i}", f"C0OTHER{i:02d}")
    api.add_channel("eng", "C0ENG0001")
    api.add_channel("secret", "C0SECRET1", member=False)
    api.users["U0ALICE"] = {"id": "U0ALICE", "name": "alice", "profile": {"display_name": "alice"}}
    api.users["U0BOB"] = {"id": "U0BOB", "name": "bob", "real_name": "Bob Lee", "profile": {}}
    recent = time.time() - 3600
    old = (MONDAY_9 - timedelta(days=14)).timestamp()
    api.add_message("C0ENG0001", ts(old, 1), user="U0ALICE", text="stale talk from two weeks ago")
    api.add_message(
        "C0ENG0001", ts(recent, 1), user="U0ALICE", text="shipped the <https://x.example/fix|fix>"
    )
    api.add_message("C0ENG0001", ts(recent, 2), user="U0BOB", text="the build is " + "very " * 60 + "slow")
    api.add_message("C0ENG0001", ts(recent, 3), user=BOT_USER_ID, bot_id=BOT_ID, text="Weekly digest posted")
    api.add_message("C0ENG0001", ts(recent, 4), user="U0CAROL", subtype="channel_join", text="joined")
    api.add_message("C0ENG0001", ts(recent, 7), user="U0DEPLOY", bot_id="B0DEPLOY", text="deploy bot says hi")
    api.add_message("C0ENG0001", ts(recent, 5), user="U0CAROL", text="welcome me")
    api.add_message("C0ENG0001", ts(recent, 6), user="U0BOB", text="reply", thread_ts=ts(recent, 1))


async def test_digest_gets_recent_human_messages_and_notes_for_unreadable_channels(
    tmp_path: Path, slack_api: FakeSlackApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(activity, "PAGE", 2)  # every list and history read takes several cursor pages
    seed(slack_api)
    spec = SPEC | {"inputs": {"chat": {"channels": ["#eng", "C0SECRET1", "#nope"]}}}
    settings = make_settings(tmp_path, slack=slack_section(slack_api), digests=[spec])
    backend = FakeBackend(reply="The team shipped a fix.")
    assistant = Assistant(settings, Router(local=backend, remote=None, routing=settings.llm.routing))
    reader = build_chat_activity(settings)
    assert isinstance(reader, SlackChatActivity)
    db = Database(settings.database_url)
    service = DigestService(
        settings, assistant, {}, db, chat_activity=reader, summarise=Intake(settings, lambda: assistant).run
    )
    try:
        await service.open()
        run = await service.run("eng-weekly", fire_time=MONDAY_9, dry_run=True)
    finally:
        await assistant.aclose()
        await db.aclose()
    assert run is not None and run.text is not None
    text = run.text
    assert "#eng · alice: shipped the https://x.example/fix" in text
    assert "#eng · Bob Lee: the build is very" in text and "…" in text
    bob = next(line for line in text.splitlines() if "Bob Lee" in line)
    assert len(bob) <= len("- #eng · Bob Lee: ") + activity.TEXT_CHARS
    assert "#eng · U0CAROL: welcome me" in text  # users.info failed: the id stands in
    assert text.index("shipped the") < text.index("the build is") < text.index("welcome me")
    for absent in ("stale talk", "Weekly digest posted", "deploy bot", "joined", "reply"):
        assert absent not in text
    not_in = messages.SLACK_ACTIVITY_NOT_IN_CHANNEL
    assert messages.SLACK_ACTIVITY_NOTE.format(channel="#secret", reason=not_in) in text
    not_found = messages.SLACK_ACTIVITY_NOT_FOUND
    assert messages.SLACK_ACTIVITY_NOTE.format(channel="#nope", reason=not_found) in text
    assert "Chat activity is not available" not in text
    # The model saw the lines as template input, fenced as untrusted; the period started a week earlier.
    prompt = "\n".join(m.content for m in backend.calls[0].messages)
    assert "shipped the https://x.example/fix" in prompt and "stale talk" not in prompt
    oldest = {float(c.args["oldest"]) for c in slack_api.of("conversations.history")}
    assert oldest == {(MONDAY_9 - timedelta(days=7)).timestamp()}
    assert len(slack_api.of("conversations.list")) >= 4  # paged by cursor; one full read per miss
    assert len(slack_api.of("users.info")) == 3  # alice, bob, carol: each looked up once


async def test_history_is_capped_per_channel_and_rate_limits_become_a_note(
    tmp_path: Path, slack_api: FakeSlackApi
) -> None:
    seed(slack_api)
    settings = make_settings(tmp_path, slack=slack_section(slack_api))
    reader = SlackChatActivity(settings.slack, limit=2)
    since = MONDAY_9 - timedelta(days=7)
    lines = await reader(["C0ENG0001"], since)
    # The newest two human messages, in order.
    assert [line.split(": ")[0] for line in lines] == ["C0ENG0001 · Bob Lee", "C0ENG0001 · U0CAROL"]

    slack_api.rate_limit("conversations.history", times=4, retry_after=0)  # past the client's 3 retries
    lines = await reader(["#eng", "#eng"], since)
    reason = messages.SLACK_ACTIVITY_RATE_LIMITED
    assert lines[0] == messages.SLACK_ACTIVITY_NOTE.format(channel="#eng", reason=reason)
    assert lines[1:] == ["#eng · Bob Lee: " + lines[1].split(": ", 1)[1], "#eng · U0CAROL: welcome me"]


def test_no_reader_without_a_slack_token(tmp_path: Path) -> None:
    assert build_chat_activity(make_settings(tmp_path)) is None


async def test_missing_scope_is_a_note(tmp_path: Path, slack_api: FakeSlackApi) -> None:
    seed(slack_api)
    slack_api.fail("conversations.list", "missing_scope")
    reader: Any = build_chat_activity(make_settings(tmp_path, slack=slack_section(slack_api)))
    lines = await reader(["#eng", "C0ENG0001"], MONDAY_9 - timedelta(days=7))
    reason = messages.SLACK_ACTIVITY_MISSING_SCOPE
    assert lines[0] == messages.SLACK_ACTIVITY_NOTE.format(channel="#eng", reason=reason)
    assert lines[-1] == "C0ENG0001 · U0CAROL: welcome me"


async def test_hearth_serve_gives_the_digest_service_the_slack_reader(
    tmp_path: Path, slack_api: FakeSlackApi, aiohttp_client: Any
) -> None:
    from server.app import create_app
    from server.digests import DIGESTS

    spec = SPEC | {"inputs": {"chat": {"channels": ["#eng"]}}}
    settings = make_settings(tmp_path, slack=slack_section(slack_api), digests=[spec])
    assistant = Assistant(settings, Router(local=FakeBackend(), remote=None, routing=settings.llm.routing))
    client = await aiohttp_client(create_app(settings, assistant=assistant))
    seed(slack_api)
    # The reader serve wired reads the configured workspace through the configured API.
    lines = await client.app[DIGESTS].chat_activity(["#eng"], MONDAY_9 - timedelta(days=7))
    assert lines[-1] == "#eng · U0CAROL: welcome me"
    assert slack_api.of("conversations.history")[0].args["channel"] == "C0ENG0001"
    await assistant.aclose()
