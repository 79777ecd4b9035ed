"""DingTalk messages a dead process left unanswered, inside `hearth serve`'s app (the fake gateway on loopback)."""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest

from bot.dingtalk.bot import note_for, read_note
from bot.dingtalk.card import card_id_for
from bot.dingtalk.message import Incoming
from bot.dingtalk.openapi import FLOW_FAILED, FLOW_FINISHED, FLOW_INPUTTING
from bot.resume import MAX_ATTEMPTS
from core.db import Database
from core.llm.fake import FakeBackend
from server.app import create_app
from tests.fixtures.dingtalk_gateway import Card, FakeDingTalk, bot_rig, dingtalk_settings, robot_message
from tests.integration.test_chat_signatures import engine
from tests.integration.test_slack_resume import StallingBackend
from tests.unit.test_claims import dead_holder


async def left_unanswered(
    settings: Any,
    data: dict[str, Any],
    *,
    attempts: int = 1,
    card: str | None = None,
    gateway: FakeDingTalk | None = None,
    created: bool = True,
) -> None:
    """What a process killed mid-answer leaves: its claim on the message and the message it noted —
    and (``card``) the AI card it had opened, still "inputting" with the text streamed so far
    (``created=False``: noted, but the process died before DingTalk created it)."""
    incoming = Incoming.from_payload(data)
    db = Database(settings.database_url)
    try:
        holder = dead_holder()
        assert await db.claim("dingtalk", incoming.msg_id, holder)
        for _ in range(attempts - 1):
            await db.release("dingtalk", incoming.msg_id, holder)
            assert await db.claim("dingtalk", incoming.msg_id, holder)
        await db.note("dingtalk", incoming.msg_id, note_for(incoming, card))
    finally:
        await db.aclose()
    if card is not None and created:
        assert gateway is not None
        space = f"dtv1.card//IM_ROBOT.{incoming.staff_id}"
        gateway.cards[card] = Card(space, content="Deploy with", status=FLOW_INPUTTING)


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


# --- AI cards a dead process left "processing" -------------------------------------------------

CARD = "track-left-by-the-dead"


async def test_a_card_left_processing_is_finished_with_the_answer_at_startup_and_nothing_else_is_posted(
    tmp_path: Path, dingtalk_gateway: FakeDingTalk, aiohttp_client: Any
) -> None:
    settings = dingtalk_settings(tmp_path, dingtalk_gateway, card_template_id="tpl.schema")
    data = robot_message("/ask how do I deploy?", gateway=dingtalk_gateway)
    await left_unanswered(settings, data, card=CARD, gateway=dingtalk_gateway)
    backend = FakeBackend(reply="Deploy with make deploy.")
    client = await aiohttp_client(create_app(settings, assistant=engine(settings, backend)))
    card = dingtalk_gateway.cards[CARD]
    await dingtalk_gateway.wait_for(lambda: card.status != FLOW_INPUTTING)
    await client.close()
    assert card.status == FLOW_FINISHED and card.finalized
    assert card.content.startswith("Deploy with make deploy.") and "Answered by fake-model" in card.content
    assert list(dingtalk_gateway.cards) == [CARD]  # no second card …
    assert dingtalk_gateway.replies("cid-1to1") == []  # … and no reply beside it
    again = await aiohttp_client(create_app(settings, assistant=engine(settings, backend)))
    await again.close()
    assert len(backend.calls) == 1 and len(dingtalk_gateway.calls_to("/v1.0/card/instances")) == 1


@pytest.mark.parametrize(
    ("text", "lost"), [("/ask how do I deploy?", "was lost"), ("问 如何部署？", "丢失了这个回答")]
)
async def test_a_card_whose_message_is_given_up_says_in_the_card_that_the_answer_was_lost(
    tmp_path: Path, dingtalk_gateway: FakeDingTalk, aiohttp_client: Any, text: str, lost: str
) -> None:
    settings = dingtalk_settings(tmp_path, dingtalk_gateway, card_template_id="tpl.schema")
    data = robot_message(text, gateway=dingtalk_gateway)
    await left_unanswered(settings, data, attempts=MAX_ATTEMPTS, card=CARD, gateway=dingtalk_gateway)
    backend = FakeBackend(reply="never")
    client = await aiohttp_client(create_app(settings, assistant=engine(settings, backend)))
    card = dingtalk_gateway.cards[CARD]
    await dingtalk_gateway.wait_for(lambda: card.status != FLOW_INPUTTING)
    await client.close()
    assert card.status == FLOW_FAILED and lost in card.content and "Deploy with" not in card.content
    assert dingtalk_gateway.replies("cid-1to1") == [] and backend.calls == []


async def test_a_resumed_refusal_closes_the_card_too(
    tmp_path: Path, dingtalk_gateway: FakeDingTalk, aiohttp_client: Any
) -> None:
    # Limits changed across the restart: the question is now too long; its card must not stay open.
    settings = dingtalk_settings(
        tmp_path, dingtalk_gateway, card_template_id="tpl.schema", max_question_chars=10
    )
    await left_unanswered(
        settings,
        robot_message("/ask how do I deploy?", gateway=dingtalk_gateway),
        card=CARD,
        gateway=dingtalk_gateway,
    )
    backend = FakeBackend(reply="never")
    client = await aiohttp_client(create_app(settings, assistant=engine(settings, backend)))
    card = dingtalk_gateway.cards[CARD]
    await dingtalk_gateway.wait_for(lambda: card.status != FLOW_INPUTTING)
    await client.close()
    assert card.status == FLOW_FAILED and "10" in card.content and backend.calls == []
    assert dingtalk_gateway.replies("cid-1to1") == []


async def test_an_answer_cut_off_mid_card_is_finished_in_that_card_by_the_next_process(
    tmp_path: Path, dingtalk_gateway: FakeDingTalk
) -> None:
    settings = dingtalk_settings(tmp_path, dingtalk_gateway, card_template_id="tpl.schema")
    stalling = StallingBackend(reply="Deploy with make deploy, then check the dashboard.")
    async with bot_rig(settings, engine(settings, stalling), dingtalk_gateway) as rig:
        rig.bot.dispatch(
            Incoming.from_payload(robot_message("/ask how do I deploy?", gateway=dingtalk_gateway))
        )
        async with asyncio.timeout(20):
            await stalling.stalled.wait()
        [track] = dingtalk_gateway.cards
        await rig.bot.aclose(0)  # cut off mid-answer: the claim is released unfinished, the card left open
    card = dingtalk_gateway.cards[track]
    assert card.status == "1" and not card.finalized
    backend = FakeBackend(reply="Deploy with make deploy.")
    async with bot_rig(settings, engine(settings, backend), dingtalk_gateway) as rig:
        rig.bot.start()
        await rig.bot.swept.wait()
    assert list(dingtalk_gateway.cards) == [track] and card.status == FLOW_FINISHED and card.finalized
    assert card.content.startswith("Deploy with make deploy.") and "dashboard" not in card.content
    assert dingtalk_gateway.replies("cid-1to1") == [] and len(backend.calls) == 1


async def test_the_card_is_noted_before_dingtalk_creates_it(
    tmp_path: Path, dingtalk_gateway: FakeDingTalk
) -> None:
    """A process that dies right after DingTalk created its card has already noted that card, so the
    next one finishes it (the test above) instead of leaving it "processing" beside a new reply."""
    settings = dingtalk_settings(tmp_path, dingtalk_gateway, card_template_id="tpl.schema")
    incoming = Incoming.from_payload(robot_message("/ask how do I deploy?", gateway=dingtalk_gateway))
    noted_at_creation: list[str | None] = []
    backend = FakeBackend(reply="Deploy with make deploy.")
    async with bot_rig(settings, engine(settings, backend), dingtalk_gateway) as rig:
        assert rig.bot.api is not None
        create = rig.bot.api.create_card

        async def creating(incoming: Incoming, template_id: str, out_track_id: str) -> None:
            note = await rig.bot.db.noted("dingtalk", incoming.msg_id)
            noted_at_creation.append(read_note(note)[1] if note else None)
            await create(incoming, template_id, out_track_id)

        rig.bot.api.create_card = creating
        rig.bot.dispatch(incoming)
        await dingtalk_gateway.wait_for(
            lambda: any(c.status == FLOW_FINISHED for c in dingtalk_gateway.cards.values())
        )
    assert list(dingtalk_gateway.cards) == [card_id_for(incoming.msg_id)]
    assert noted_at_creation == [card_id_for(incoming.msg_id)]


async def test_a_noted_card_that_was_never_created_gets_the_answer_as_a_reply(
    tmp_path: Path, dingtalk_gateway: FakeDingTalk, aiohttp_client: Any
) -> None:
    """The process died after noting its card but before DingTalk created it: DingTalk says "card not
    found", so the next process replies with the answer instead; the message is not lost."""
    settings = dingtalk_settings(tmp_path, dingtalk_gateway, card_template_id="tpl.schema")
    data = robot_message("/ask how do I deploy?", gateway=dingtalk_gateway)
    await left_unanswered(settings, data, card=card_id_for(Incoming.from_payload(data).msg_id), created=False)
    backend = FakeBackend(reply="Deploy with make deploy.")
    client = await aiohttp_client(create_app(settings, assistant=engine(settings, backend)))
    [reply] = await dingtalk_gateway.wait_for(lambda: dingtalk_gateway.replies("cid-1to1"))
    await client.close()
    assert reply.startswith("Deploy with make deploy.")
    assert dingtalk_gateway.cards == {} and len(backend.calls) == 1


def test_a_note_from_before_cards_were_noted_still_reads() -> None:
    incoming = Incoming.from_payload(robot_message("/ask how do I deploy?"))
    assert read_note(json.dumps(asdict(incoming))) == (incoming, None)  # what notes held before
    assert read_note(note_for(incoming, CARD)) == (incoming, CARD)
    assert read_note(note_for(incoming, None)) == (incoming, None)
