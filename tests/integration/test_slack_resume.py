"""Answers a dead process left unfinished are finished in their placeholder (real slack_sdk, fake Slack API).

A "dead process" here is a claim whose holder is a process of this host that has exited, with the
note and the placeholder message it left; ``tests/e2e/test_slack_process.py`` does the same with a
SIGKILLed `hearth serve`.
"""

from __future__ import annotations

import time

from bot import messages
from bot.slack.answering import Question
from bot.resume import MAX_ATTEMPTS
from core.db import Database
from core.llm.fake import FakeBackend
from tests.fixtures.core import make_settings
from tests.fixtures.slack_api import BOT_ID, BOT_USER_ID, event_body
from tests.integration.test_slack_bot import assistant_with, finals, mention
from tests.unit.test_claims import dead_holder


async def _nowhere(notice: str) -> None:
    raise AssertionError(notice)


async def left_by_a_dead_process(slack_api, tmp_path, q: Question, *, attempts: int = 1) -> str:
    """The state a process killed mid-answer leaves: its claim, its note, its "Thinking…" placeholder."""
    db = Database(make_settings(tmp_path).database_url)  # the state database the bot will open
    try:
        return await _leave(slack_api, db, q, attempts)
    finally:
        await db.aclose()


async def _leave(slack_api, db: Database, q: Question, attempts: int) -> str:
    holder = dead_holder()
    assert await db.claim("slack", q.question_id, holder)
    for _ in range(attempts - 1):  # each earlier attempt died too
        await db.release("slack", q.question_id, holder)
        assert await db.claim("slack", q.question_id, holder)
    placeholder = slack_api.next_ts()
    slack_api.add_message(
        q.channel,
        placeholder,
        text=messages.THINKING,
        user=BOT_USER_ID,
        bot_id=BOT_ID,
        thread_ts=q.reply_thread,
    )
    await db.note("slack", q.question_id, q.note(placeholder))
    return placeholder


def question(**overrides) -> Question:
    fields = {
        "kind": "ask",
        "user": "U1",
        "channel": "C1",
        "text": "And Y?",
        "question_id": "event:EvDead",
        "notify": _nowhere,
        "reply_thread": "1700000000.000001",
        "history_thread": "1700000000.000001",
        "message_ts": "1700000000.000003",
    }
    return Question(**(fields | overrides))


async def test_a_dead_processs_answer_is_finished_in_its_placeholder_with_the_thread_history(
    make_slack, slack_api, tmp_path
):
    root = "1700000000.000001"
    slack_api.add_message("C1", root, user="U1", text=f"<@{BOT_USER_ID}> What is X?", thread_ts=root)
    slack_api.add_message(
        "C1", "1700000000.000002", user=BOT_USER_ID, bot_id=BOT_ID, text="X.", thread_ts=root
    )
    slack_api.add_message(
        "C1", "1700000000.000003", user="U1", text=f"<@{BOT_USER_ID}> And Y?", thread_ts=root
    )
    backend = FakeBackend(reply="Y is the other thing.")
    placeholder = await left_by_a_dead_process(slack_api, tmp_path, question())
    h = await make_slack(assistant_with(tmp_path, backend))  # the restarted process: it sweeps at start
    [final] = await slack_api.wait_for(finals)
    assert final.method == "chat.update" and final.args["ts"] == placeholder
    assert "Y is the other thing." in final.blocks_text()
    assert not [c for c in slack_api.of("chat.postMessage")]  # nothing new in the thread
    prompt = "\n".join(m.content for m in backend.calls[0].messages)
    assert "What is X?" in prompt and "And Y?" in prompt
    # Finished: a second sweep, and Slack's late retry, find nothing to do.
    await h.bot.resumer.swept.wait()  # the startup sweep is over: it answered, then finished the claim
    assert await h.bot.resumer.sweep() == 0
    assert await h.db.noted("slack", "event:EvDead") is None
    retry = event_body(mention("And Y?", ts="1700000000.000003", thread_ts=root), event_id="EvDead")
    assert (await h.send(retry, retry_num=1)).status == 200
    await h.bot.drain()
    assert len(backend.calls) == 1 and len(finals(slack_api.calls)) == 1


async def test_a_live_claim_is_left_alone(make_slack, slack_api, tmp_path):
    backend = FakeBackend(reply="unused")
    h = await make_slack(assistant_with(tmp_path, backend))
    q = question(question_id="event:EvLive")
    assert await h.db.claim("slack", q.question_id)  # this (live) process is answering it
    await h.db.note("slack", q.question_id, q.note("1700000001.000001"))
    assert await h.db.unfinished("slack") == []
    assert await h.bot.resumer.sweep() == 0
    assert backend.calls == []


async def test_a_question_that_killed_too_many_processes_or_is_too_old_is_given_up_in_one_sentence(
    make_slack, slack_api, tmp_path
):
    backend = FakeBackend(reply="never")
    poison = question(question_id="event:EvPoison", reply_thread=None, history_thread=None, message_ts=None)
    poisoned = await left_by_a_dead_process(slack_api, tmp_path, poison, attempts=MAX_ATTEMPTS)
    h = await make_slack(assistant_with(tmp_path, backend))
    await h.bot.resumer.swept.wait()
    old = question(question_id="command:trig.old", reply_thread=None, history_thread=None, message_ts=None)
    stale = await _leave(slack_api, h.db, old, 1)
    h.bot.resumer.wall = lambda: time.time() + 2 * h.bot.resumer.max_age_s  # the old one: hours ago
    assert await h.bot.resumer.sweep() == 1
    assert backend.calls == []
    updates = {c.args["ts"]: c for c in slack_api.of("chat.update")}
    assert set(updates) == {poisoned, stale}
    assert all(messages.ANSWER_LOST in c.blocks_text() for c in updates.values())
    assert await h.db.unfinished("slack") == []  # finished: no one answers them later
    assert not await h.db.claim("slack", "event:EvPoison")


async def test_a_resumed_refusal_replaces_the_placeholder(make_slack, slack_api, tmp_path):
    backend = FakeBackend(reply="unused")
    q = question(
        question_id="event:EvLong", text="x" * 50, reply_thread=None, history_thread=None, message_ts=None
    )
    placeholder = await left_by_a_dead_process(slack_api, tmp_path, q)
    await make_slack(assistant_with(tmp_path, backend), max_question_chars=10)
    [update] = await slack_api.wait_for(lambda calls: [c for c in calls if c.method == "chat.update"])
    assert update.args["ts"] == placeholder and "50 characters" in update.blocks_text()
    assert backend.calls == []
