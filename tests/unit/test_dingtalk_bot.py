"""The DingTalk bot end to end against the fake DingTalk on loopback, with FakeBackend as the model."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from core.assistant import Assistant
from core.contracts import Hit
from core.errors import BackendUnavailable
from core.llm.fake import FakeBackend
from core.llm.router import Router
from tests.fixtures.dingtalk_gateway import FakeDingTalk, bot_rig, dingtalk_settings, robot_message


def prompt_text(backend: FakeBackend, call: int = -1) -> str:
    return "\n".join(m.content for m in backend.calls[call].messages)


async def test_plain_text_in_a_1to1_chat_is_answered_with_footer(
    tmp_path: Path, dingtalk_gateway: FakeDingTalk, fake_assistant: Assistant, fake_backend: FakeBackend
) -> None:
    settings = dingtalk_settings(tmp_path, dingtalk_gateway)
    async with bot_rig(settings, fake_assistant, dingtalk_gateway) as rig:
        await rig.send(robot_message("How do I deploy?", gateway=dingtalk_gateway))
    [reply] = dingtalk_gateway.replies("cid-1to1")
    assert reply.startswith("Hearth fake answer citing [1].")
    assert reply.endswith("Answered by fake-model (local)")
    assert "How do I deploy?" in prompt_text(fake_backend)
    call = dingtalk_gateway.calls_to("/session/cid-1to1")[0]
    assert call.body["msgtype"] == "markdown" and call.body["markdown"]["title"] == "Hearth"


async def test_chinese_command_gets_a_chinese_reply(
    tmp_path: Path, dingtalk_gateway: FakeDingTalk, fake_assistant: Assistant, fake_backend: FakeBackend
) -> None:
    settings = dingtalk_settings(tmp_path, dingtalk_gateway)
    async with bot_rig(settings, fake_assistant, dingtalk_gateway) as rig:
        await rig.send(
            robot_message("问 怎么申请休假？", gateway=dingtalk_gateway, group=True, conversation_id="g1")
        )
    [reply] = dingtalk_gateway.replies("g1")
    assert reply.endswith("由 fake-model（本地）回答")
    assert "怎么申请休假？" in prompt_text(fake_backend) and "问 怎么" not in prompt_text(fake_backend)
    # Group replies @-mention the asker.
    assert dingtalk_gateway.calls_to("/session/g1")[0].body["at"] == {"atUserIds": ["staff-1"]}


@pytest.mark.parametrize(("text", "needle"), [("/help", "/data <question>"), ("帮助", "数据 <问题>")])
async def test_help_needs_no_model(
    tmp_path: Path,
    dingtalk_gateway: FakeDingTalk,
    fake_assistant: Assistant,
    fake_backend: FakeBackend,
    text: str,
    needle: str,
) -> None:
    settings = dingtalk_settings(tmp_path, dingtalk_gateway)
    async with bot_rig(settings, fake_assistant, dingtalk_gateway) as rig:
        await rig.send(robot_message(text, gateway=dingtalk_gateway))
    assert needle in dingtalk_gateway.replies("cid-1to1")[0]
    assert fake_backend.calls == []


async def test_duplicate_msg_id_is_answered_once(
    tmp_path: Path,
    dingtalk_gateway: FakeDingTalk,
    fake_assistant: Assistant,
    fake_backend: FakeBackend,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = dingtalk_settings(tmp_path, dingtalk_gateway)
    message = robot_message("How do I deploy?", gateway=dingtalk_gateway, msg_id="msg-42")
    caplog.set_level(logging.INFO, "core.intake")
    async with bot_rig(settings, fake_assistant, dingtalk_gateway) as rig:
        await rig.send(message)
        await rig.send(dict(message))
    # A restarted process shares the database, so a redelivery after a restart is ignored too.
    async with bot_rig(settings, fake_assistant, dingtalk_gateway) as rig:
        await rig.send(dict(message))
    assert len(dingtalk_gateway.replies("cid-1to1")) == 1
    assert len(fake_backend.calls) == 1
    assert "msg-42 was already answered" in caplog.text


class RecordingRetriever:
    """Returns one hit and records the ACL each search used."""

    def __init__(self) -> None:
        self.acls: list[frozenset[str] | None] = []

    async def search(self, query: str, *, acl: frozenset[str] | None, k: int) -> Sequence[Hit]:
        self.acls.append(acl)
        return [Hit("c1", "d1", "https://wiki.example/leave", "Leave policy", "Fill in the form.", 0.9, "§2")]


async def test_acl_mapping_and_sources(
    tmp_path: Path, dingtalk_gateway: FakeDingTalk, fake_backend: FakeBackend
) -> None:
    settings = dingtalk_settings(
        tmp_path,
        dingtalk_gateway,
        default_acl=["public"],
        users={"staff-7": ["group:hr"]},
        conversations={"g-fin": ["group:finance"]},
    )
    retriever = RecordingRetriever()
    assistant = Assistant(
        settings, Router(local=fake_backend, remote=None, routing=settings.llm.routing), retriever=retriever
    )
    async with bot_rig(settings, assistant, dingtalk_gateway) as rig:
        await rig.send(
            robot_message(
                "/ask leave?",
                gateway=dingtalk_gateway,
                staff_id="staff-7",
                group=True,
                conversation_id="g-fin",
            )
        )
        await rig.send(robot_message("leave?", gateway=dingtalk_gateway, staff_id="staff-8"))
    group = frozenset({"public", "group:finance"})  # everyone in g-fin sees the reply
    sender = frozenset({"public", "user:dingtalk:staff-7", "group:hr", "group:finance"})
    assert retriever.acls == [group, sender, frozenset({"public", "user:dingtalk:staff-8"})]
    reply = dingtalk_gateway.replies("g-fin")[0]
    assert "**Sources**" in reply and "- [1] [Leave policy](https://wiki.example/leave) — §2" in reply


class PagesRetriever:
    """Two chunks of one wiki page and one file: what a page cited twice comes back as."""

    async def search(self, query: str, *, acl: frozenset[str] | None, k: int) -> Sequence[Hit]:
        page = "https://wiki.example/leave"
        return [
            Hit("leave#1", "wiki:leave", page, "Leave [policy]", "Vacation is 25 days.", 0.9, "Vacation"),
            Hit("form#1", "files:form", "docs/form.md", "Form", "Use form L1.", 0.8, ""),
            Hit("leave#2", "wiki:leave", page, "Leave [policy]", "Unused days are paid out.", 0.7, "Payout"),
        ]


async def test_a_page_cited_twice_is_listed_once_with_both_numbers(
    tmp_path: Path, dingtalk_gateway: FakeDingTalk
) -> None:
    settings = dingtalk_settings(tmp_path, dingtalk_gateway, sections={"retrieval": {"grounding": "off"}})
    backend = FakeBackend(reply="Vacation is 25 days [1]. Unused days are paid out [3]. Use form L1 [2].")
    assistant = Assistant(
        settings, Router(local=backend, remote=None, routing=settings.llm.routing), retriever=PagesRetriever()
    )
    async with bot_rig(settings, assistant, dingtalk_gateway) as rig:
        await rig.send(robot_message("/ask leave?", gateway=dingtalk_gateway))
    [reply] = dingtalk_gateway.replies("cid-1to1")
    sources = reply.split("**Sources**\n\n", 1)[1].split("\n\n", 1)[0]
    assert sources.splitlines() == [
        "- [1, 3] [Leave (policy)](https://wiki.example/leave) — Vacation; Payout",
        "- [2] Form (docs/form.md)",
    ]


async def test_model_down_gets_an_apology(tmp_path: Path, dingtalk_gateway: FakeDingTalk) -> None:
    settings = dingtalk_settings(tmp_path, dingtalk_gateway)
    down = FakeBackend(error=BackendUnavailable("llama.cpp could not load the model"))
    assistant = Assistant(settings, Router(local=down, remote=None, routing=settings.llm.routing))
    async with bot_rig(settings, assistant, dingtalk_gateway) as rig:
        await rig.send(robot_message("How do I deploy?", gateway=dingtalk_gateway))
        await rig.send(robot_message("怎么部署？", gateway=dingtalk_gateway))
    en, zh = dingtalk_gateway.replies("cid-1to1")
    assert en.startswith("Sorry — no model is available") and "llama" not in en
    assert zh.startswith("抱歉，目前没有可用的模型")


async def test_conversation_memory_feeds_follow_ups(
    tmp_path: Path, dingtalk_gateway: FakeDingTalk, fake_assistant: Assistant, fake_backend: FakeBackend
) -> None:
    settings = dingtalk_settings(tmp_path, dingtalk_gateway)
    async with bot_rig(settings, fake_assistant, dingtalk_gateway) as rig:
        await rig.send(robot_message("What is the VPN address?", gateway=dingtalk_gateway))
        await rig.send(robot_message("And the port?", gateway=dingtalk_gateway))
        await rig.send(robot_message("Unrelated", gateway=dingtalk_gateway, conversation_id="other"))
    assert "What is the VPN address?" in prompt_text(fake_backend, 1)
    assert "What is the VPN address?" not in prompt_text(fake_backend, 2)


async def test_data_without_tables_is_polite(
    tmp_path: Path, dingtalk_gateway: FakeDingTalk, fake_assistant: Assistant, fake_backend: FakeBackend
) -> None:
    settings = dingtalk_settings(tmp_path, dingtalk_gateway)
    async with bot_rig(settings, fake_assistant, dingtalk_gateway) as rig:
        await rig.send(robot_message("/data revenue by month", gateway=dingtalk_gateway))
    assert "Table questions are not set up" in dingtalk_gateway.replies("cid-1to1")[0]
    assert fake_backend.calls == []


def sales_db(path: Path) -> Path:
    import sqlite3

    db = path / "shop.sqlite"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE sales (month TEXT, revenue INTEGER)")
        conn.executemany("INSERT INTO sales VALUES (?, ?)", [("2026-02", 10), ("2026-03", 12)])
    return db


@pytest.mark.parametrize(
    ("model_reply", "expected"),
    [
        (
            "SELECT month, revenue FROM sales ORDER BY month",
            ["| month | revenue |", "| 2026-03 | 12 |", "```sql"],
        ),
        ("DELETE FROM sales", ["无法根据数据表回答：Could not answer from the tables"]),
    ],
    ids=["select", "hostile"],
)
async def test_data_questions_go_through_the_real_table_service(
    tmp_path: Path, dingtalk_gateway: FakeDingTalk, model_reply: str, expected: list[str]
) -> None:
    import sqlite3

    from core.tables.service import TableService

    db = sales_db(tmp_path)
    settings = dingtalk_settings(
        tmp_path, dingtalk_gateway, sections={"tables": [{"name": "shop", "type": "sqlite", "path": str(db)}]}
    )
    backend = FakeBackend(reply=model_reply)
    assistant = Assistant(settings, Router(local=backend, remote=None, routing=settings.llm.routing))
    assistant.tables = TableService(settings, assistant.router, assistant.prompts)
    try:
        async with bot_rig(settings, assistant, dingtalk_gateway) as rig:
            await rig.send(robot_message("数据 每月收入", gateway=dingtalk_gateway))
    finally:
        await assistant.tables.aclose()
    reply = dingtalk_gateway.replies("cid-1to1")[0]
    if model_reply.startswith("SELECT"):
        for needle in expected:
            assert needle in reply
        assert "每月收入" in prompt_text(backend) and reply.endswith("由 fake-model（本地）回答")
        assert "\nSQL:" not in reply
    else:
        assert reply.startswith(expected[0]) and "| month |" not in reply and "Traceback" not in reply
        with sqlite3.connect(db) as conn:
            assert conn.execute("SELECT count(*) FROM sales").fetchone() == (2,)


async def test_explain_uses_the_explain_template(
    tmp_path: Path, dingtalk_gateway: FakeDingTalk, fake_assistant: Assistant, fake_backend: FakeBackend
) -> None:
    settings = dingtalk_settings(tmp_path, dingtalk_gateway)
    async with bot_rig(settings, fake_assistant, dingtalk_gateway) as rig:
        await rig.send(robot_message("/explain ```python\nprint(sum([1, 2]))\n```", gateway=dingtalk_gateway))
        await rig.send(robot_message("解释", gateway=dingtalk_gateway))
    prompt = prompt_text(fake_backend)
    assert "Explain this python code" in prompt and "print(sum([1, 2]))" in prompt
    first, second = dingtalk_gateway.replies("cid-1to1")
    assert first.endswith("Answered by fake-model (local)")
    assert second.startswith("请在 `解释` 后附上要解释的代码")


async def test_refusals_before_the_model(
    tmp_path: Path, dingtalk_gateway: FakeDingTalk, fake_assistant: Assistant, fake_backend: FakeBackend
) -> None:
    settings = dingtalk_settings(tmp_path, dingtalk_gateway, max_question_chars=50, rate_limit_per_minute=2)
    async with bot_rig(settings, fake_assistant, dingtalk_gateway) as rig:
        await rig.send(robot_message("x" * 60, gateway=dingtalk_gateway))
        await rig.send(robot_message("", gateway=dingtalk_gateway, msgtype="picture"))
        await rig.send(
            robot_message(
                "just chatting", gateway=dingtalk_gateway, group=True, at=False, conversation_id="g-quiet"
            )
        )
        for _ in range(3):
            await rig.send(robot_message("q", gateway=dingtalk_gateway))
    replies = dingtalk_gateway.replies("cid-1to1")
    assert replies[0] == "That message is 60 characters; I can take up to 50. Please shorten it."
    assert replies[1] == "I can only read text messages — please type your question."
    assert replies[-1].startswith("You're asking faster than I can answer")
    assert dingtalk_gateway.replies("g-quiet") == []
    assert len(fake_backend.calls) == 2


async def test_expired_session_webhook_falls_back_to_the_robot_api(
    tmp_path: Path,
    dingtalk_gateway: FakeDingTalk,
    fake_assistant: Assistant,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = dingtalk_settings(tmp_path, dingtalk_gateway, robot_code="robot-1")
    stale = int(time.time() * 1000) - 1000
    async with bot_rig(settings, fake_assistant, dingtalk_gateway) as rig:
        await rig.send(robot_message("hi", gateway=dingtalk_gateway, expires_ms=stale))
        dingtalk_gateway.expired_sessions.add("g-old")
        await rig.send(robot_message("hi", gateway=dingtalk_gateway, group=True, conversation_id="g-old"))
    assert dingtalk_gateway.replies("cid-1to1") == []
    [one] = dingtalk_gateway.calls_to("/v1.0/robot/oToMessages/batchSend")
    assert one.body["userIds"] == ["staff-1"] and one.body["msgKey"] == "sampleMarkdown"
    assert "Answered by fake-model" in one.body["msgParam"]
    [group] = dingtalk_gateway.calls_to("/v1.0/robot/groupMessages/send")
    assert group.body["openConversationId"] == "g-old"
    assert "sessionWebhook of message" in caplog.text and "expired" in caplog.text
    assert "errcode 300001" in caplog.text
    assert len(dingtalk_gateway.calls_to("/v1.0/oauth2/accessToken")) == 1  # the token is cached


async def test_expired_session_webhook_without_fallback_logs_and_survives(
    tmp_path: Path,
    dingtalk_gateway: FakeDingTalk,
    fake_assistant: Assistant,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = dingtalk_settings(tmp_path, dingtalk_gateway, client_id=None)
    stale = int(time.time() * 1000) - 1000
    async with bot_rig(settings, fake_assistant, dingtalk_gateway) as rig:
        await rig.send(robot_message("hi", gateway=dingtalk_gateway, expires_ms=stale))
        await rig.send(robot_message("/help", gateway=dingtalk_gateway))
    assert "was not delivered" in caplog.text and "dingtalk.fallback_webhook" in caplog.text
    assert len(dingtalk_gateway.replies("cid-1to1")) == 1  # the bot keeps answering


async def test_expired_session_webhook_falls_back_to_a_webhook(
    tmp_path: Path, dingtalk_gateway: FakeDingTalk, fake_assistant: Assistant
) -> None:
    settings = dingtalk_settings(tmp_path, dingtalk_gateway, client_id=None, fallback_webhook="team")
    stale = int(time.time() * 1000) - 1000
    async with bot_rig(settings, fake_assistant, dingtalk_gateway) as rig:
        await rig.send(robot_message("hi", gateway=dingtalk_gateway, expires_ms=stale))
    [post] = dingtalk_gateway.calls_to("/robot/send")
    assert "Answered by fake-model" in post.body["markdown"]["text"]


async def test_ai_card_streams_the_answer(tmp_path: Path, dingtalk_gateway: FakeDingTalk) -> None:
    settings = dingtalk_settings(tmp_path, dingtalk_gateway, card_template_id="tpl.schema")
    backend = FakeBackend(reply=" ".join(f"word{i}" for i in range(40)))
    assistant = Assistant(settings, Router(local=backend, remote=None, routing=settings.llm.routing))
    ticks = iter(range(0, 1000))
    async with bot_rig(settings, assistant, dingtalk_gateway, clock=lambda: float(next(ticks))) as rig:
        await rig.send(
            robot_message("stream please", gateway=dingtalk_gateway, group=True, conversation_id="g-card")
        )
    [create] = dingtalk_gateway.calls_to("/v1.0/card/instances/createAndDeliver")
    assert create.body["cardTemplateId"] == "tpl.schema"
    assert create.body["openSpaceId"] == "dtv1.card//IM_GROUP.g-card"
    updates = dingtalk_gateway.calls_to("/v1.0/card/streaming")
    assert len(updates) > 3
    assert all(u.body["outTrackId"] == create.body["outTrackId"] for u in updates)
    assert [len(u.body["content"]) for u in updates] == sorted(len(u.body["content"]) for u in updates)
    assert updates[-1].body["isFinalize"] is True and updates[-1].body["content"].endswith(
        "Answered by fake-model (local)"
    )
    assert not any(u.body["isFinalize"] for u in updates[:-1])
    [status] = dingtalk_gateway.calls_to("/v1.0/card/instances")
    assert status.body["cardData"]["cardParamMap"]["flowStatus"] == "3"
    assert dingtalk_gateway.replies("g-card") == []  # no duplicate sessionWebhook message


async def test_thinking_notice_precedes_a_slow_answer(tmp_path: Path, dingtalk_gateway: FakeDingTalk) -> None:
    settings = dingtalk_settings(tmp_path, dingtalk_gateway)
    backend = FakeBackend(reply="slow answer", first_token_delay=0.3)
    assistant = Assistant(settings, Router(local=backend, remote=None, routing=settings.llm.routing))
    async with bot_rig(settings, assistant, dingtalk_gateway, thinking_after_s=0.0) as rig:
        await rig.send(robot_message("q", gateway=dingtalk_gateway))
    assert dingtalk_gateway.replies("cid-1to1")[0] == "Thinking…"
    assert dingtalk_gateway.replies("cid-1to1")[1].startswith("slow answer")


async def test_digest_commands_reach_the_digest_service_and_post_through_the_webhook(
    tmp_path: Path, dingtalk_gateway: FakeDingTalk, fake_backend: FakeBackend
) -> None:
    from core.db import Database
    from core.digests.service import DigestService
    from core.intake import Intake

    spec = {
        "name": "team-weekly",
        "schedule": "0 9 * * MON",
        "post_to": [{"dingtalk": "team"}],
        "owner": "dingtalk:team",
        "on_no_changes": "post",
    }
    settings = dingtalk_settings(tmp_path, dingtalk_gateway, sections={"digests": [spec]})
    assistant = Assistant(settings, Router(local=fake_backend, remote=None, routing=settings.llm.routing))
    async with bot_rig(settings, assistant, dingtalk_gateway) as rig:
        await rig.send(robot_message("/digest list", gateway=dingtalk_gateway))
        service = DigestService(
            settings,
            assistant,
            {"dingtalk": rig.poster},
            Database(settings.database_url),
            backoff=(0.0, 0.0, 0.0),
            leader_interval_s=3600.0,
            summarise=Intake(settings, lambda: assistant).run,
        )
        await service.start()
        rig.bot._digests = lambda: service
        await rig.send(robot_message("摘要 list", gateway=dingtalk_gateway))
        await rig.send(robot_message("/digest run team-weekly", gateway=dingtalk_gateway))
        await rig.send(
            robot_message('/digest create daily "0 8 * * *" post_to=dingtalk:team', gateway=dingtalk_gateway)
        )
    await service.stop()
    await service.db.aclose()
    unavailable, listed, ran, created = dingtalk_gateway.replies("cid-1to1")
    assert unavailable.startswith("Digests are not running")
    assert "team-weekly" in listed and "dingtalk team" in listed
    assert ran.startswith("Ran 'team-weekly'")
    assert created.startswith("Created digest 'daily'")
    [post] = dingtalk_gateway.calls_to("/robot/send")
    assert post.body["markdown"]["text"].strip()
