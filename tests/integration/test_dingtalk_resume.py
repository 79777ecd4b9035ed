"""DingTalk messages a dead process left unanswered, inside `hearth serve`'s app (the fake gateway on loopback)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bot.dingtalk.message import Incoming
from bot.resume import MAX_ATTEMPTS
from core.db import Database
from core.llm.fake import FakeBackend
from server.app import create_app
from tests.fixtures.dingtalk_gateway import FakeDingTalk, dingtalk_settings, robot_message
from tests.integration.test_chat_signatures import engine
from tests.unit.test_claims import dead_holder


async def left_unanswered(settings: Any, data: dict[str, Any], *, attempts: int = 1) -> None:
    """What a process killed mid-answer leaves: its claim on the message and the message it noted."""
    incoming = Incoming.from_payload(data)
    db = Database(settings.database_url)
    try:
        holder = dead_holder()
        assert await db.claim("dingtalk", incoming.msg_id, holder)
        for _ in range(attempts - 1):
            await db.release("dingtalk", incoming.msg_id, holder)
            assert await db.claim("dingtalk", incoming.msg_id, holder)
        await db.note("dingtalk", incoming.msg_id, json.dumps(asdict(incoming)))
    finally:
        await db.aclose()


async def test_a_message_left_unanswered_is_answered_at_startup_once(
    tmp_path: Path, dingtalk_gateway: FakeDingTalk, aiohttp_client: Any
) -> None:
    settings = dingtalk_settings(tmp_path, dingtalk_gateway)
    data = robot_message(
        "/ask how do I deploy?", gateway=dingtalk_gateway, group=True, conversation_id="cid-g"
    )
    await left_unanswered(settings, data)
    backend = FakeBackend(reply="Deploy with make deploy.")
    client = await aiohttp_client(create_app(settings, assistant=engine(settings, backend)))
    [reply] = await dingtalk_gateway.wait_for(lambda: dingtalk_gateway.replies("cid-g"))
    assert reply.startswith("Deploy with make deploy.")
    await client.close()
    # Restarted again: the message is answered, nothing is left to resume.
    again = await aiohttp_client(create_app(settings, assistant=engine(settings, backend)))
    await again.close()
    assert len(backend.calls) == 1 and len(dingtalk_gateway.replies("cid-g")) == 1


async def test_a_message_that_killed_too_many_processes_is_given_up_in_its_language(
    tmp_path: Path, dingtalk_gateway: FakeDingTalk, aiohttp_client: Any
) -> None:
    settings = dingtalk_settings(tmp_path, dingtalk_gateway)
    data = robot_message("问 如何部署？", gateway=dingtalk_gateway)
    await left_unanswered(settings, data, attempts=MAX_ATTEMPTS)
    backend = FakeBackend(reply="never")
    client = await aiohttp_client(create_app(settings, assistant=engine(settings, backend)))
    [reply] = await dingtalk_gateway.wait_for(lambda: dingtalk_gateway.replies("cid-1to1"))
    await client.close()
    assert "丢失了这个回答" in reply
    assert backend.calls == []
