"""Answers a dead process left unfinished are finished in their placeholder (real slack_sdk, fake Slack API).

A "dead process" here is a claim whose holder is a process of this host that has exited, with the
note and the placeholder message it left; ``tests/e2e/test_slack_process.py`` does the same with a
SIGKILLed `hearth serve`.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest

from bot import messages
from bot.resume import MAX_ATTEMPTS
from bot.slack.answering import ANSWER_EVENT, Question
from core.db import Database
from core.llm.fake import FakeBackend
from tests.fixtures.core import make_settings
from tests.fixtures.slack_api import BOT_ID, BOT_USER_ID, command_body, event_body
from tests.integration.test_slack_bot import assistant_with, finals, mention
from tests.unit.test_claims import dead_holder


async def _nowhere(notice: str) -> None:
    raise AssertionError(notice)


async def left_by_a_dead_process(
    slack_api, tmp_path, q: Question, *, attempts: int = 1, shown: Sequence[str] = (messages.THINKING,)
) -> list[str]:
    """The state a process killed mid-answer leaves: its claim, its note, and its messages — the
    "Thinking…" placeholder, or (``shown``) the parts of a long answer it had streamed so far."""
    db = Database(make_settings(tmp_path).database_url)  # the state database the bot will open
    try:
        return await _leave(slack_api, db, q, attempts, shown)
    finally:
        await db.aclose()


async def _leave(
    slack_api, db: Database, q: Question, attempts: int, shown: Sequence[str] = (messages.THINKING,)
) -> list[str]:
    holder = dead_holder()
    assert await db.claim("slack", q.question_id, holder)
    for _ in range(attempts - 1):  # each earlier attempt died too
        await db.release("slack", q.question_id, holder)
        assert await db.claim("slack", q.question_id, holder)
    posted = []
    for text in shown:
        posted.append(slack_api.next_ts())
        slack_api.add_message(
            q.channel, posted[-1], text=text, user=BOT_USER_ID, bot_id=BOT_ID, thread_ts=q.reply_thread
        )
    await db.note("slack", q.question_id, q.note(posted))
    return posted


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
    [placeholder] = await left_by_a_dead_process(slack_api, tmp_path, question())
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
    await h.db.note("slack", q.question_id, q.note(["1700000001.000001"]))
    assert await h.db.unfinished("slack") == []
    assert await h.bot.resumer.sweep() == 0
    assert backend.calls == []


async def test_a_question_that_killed_too_many_processes_or_is_too_old_is_given_up_in_one_sentence(
    make_slack, slack_api, tmp_path
):
    backend = FakeBackend(reply="never")
    poison = question(question_id="event:EvPoison", reply_thread=None, history_thread=None, message_ts=None)
    [poisoned] = await left_by_a_dead_process(slack_api, tmp_path, poison, attempts=MAX_ATTEMPTS)
    h = await make_slack(assistant_with(tmp_path, backend))
    await h.bot.resumer.swept.wait()
    old = question(question_id="command:trig.old", reply_thread=None, history_thread=None, message_ts=None)
    [stale] = await _leave(slack_api, h.db, old, 1)
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
    [placeholder] = await left_by_a_dead_process(slack_api, tmp_path, q)
    await make_slack(assistant_with(tmp_path, backend), max_question_chars=10)
    [update] = await slack_api.wait_for(lambda calls: [c for c in calls if c.method == "chat.update"])
    assert update.args["ts"] == placeholder and "50 characters" in update.blocks_text()
    assert backend.calls == []


# --- a long answer, split over several messages ------------------------------------------------

WORDS = [f"word{i:04d}" for i in range(900)]  # about 8,000 characters: three Slack messages
LONG = " ".join(WORDS)


def top_level(**overrides) -> Question:
    """A slash command's question (Slack never retries one: only the sweep can finish it)."""
    return question(reply_thread=None, history_thread=None, message_ts=None, **overrides)


def bot_messages(slack_api, channel: str = "C1") -> list[dict]:
    return [m for m in slack_api.messages.get(channel, []) if m.get("bot_id") or m.get("user") == BOT_USER_ID]


async def test_a_split_answer_is_finished_in_all_its_messages_without_a_copy(make_slack, slack_api, tmp_path):
    q = top_level(question_id="command:trig.split")
    left = await left_by_a_dead_process(
        slack_api, tmp_path, q, shown=[" ".join(WORDS[:300]), " ".join(WORDS[300:600]), "word0600 …"]
    )
    backend = FakeBackend(reply=LONG)
    h = await make_slack(assistant_with(tmp_path, backend))
    [final] = await slack_api.wait_for(finals)
    await h.bot.resumer.swept.wait()  # the sweep that answered it is over (deletes included)
    assert not slack_api.of("chat.postMessage") and not slack_api.of("chat.delete")
    last = {c.args["ts"]: c for c in slack_api.of("chat.update")}  # each message's last update
    assert list(last) == left and final.args["ts"] == left[-1]  # buttons and sources on the last one
    shown = " ".join(m["text"] for m in bot_messages(slack_api))
    positions = [shown.find(w) for w in WORDS]
    assert all(p >= 0 for p in positions) and positions == sorted(positions)  # every word, once, in order
    assert shown.count("word0450") == 1 and "…" not in shown
    assert await h.bot.resumer.sweep() == 0 and len(backend.calls) == 1


async def test_a_shorter_answer_keeps_the_first_message_and_deletes_the_rest(make_slack, slack_api, tmp_path):
    q = top_level(question_id="command:trig.shorter")
    left = await left_by_a_dead_process(
        slack_api, tmp_path, q, shown=[" ".join(WORDS[:300]), " ".join(WORDS[300:600]), "word0600 …"]
    )
    h = await make_slack(assistant_with(tmp_path, FakeBackend(reply="Short this time.")))
    [final] = await slack_api.wait_for(finals)
    await h.bot.resumer.swept.wait()  # the sweep that answered it is over (deletes included)
    assert final.method == "chat.update" and final.args["ts"] == left[0]
    assert [c.args["ts"] for c in slack_api.of("chat.delete")] == left[1:]
    assert not slack_api.of("chat.postMessage")
    [answer] = bot_messages(slack_api)
    assert answer["ts"] == left[0] and "Short this time." in answer["text"]


async def test_a_split_answer_given_up_says_so_once_and_leaves_no_part_behind(
    make_slack, slack_api, tmp_path
):
    q = top_level(question_id="command:trig.poison")
    left = await left_by_a_dead_process(
        slack_api, tmp_path, q, attempts=MAX_ATTEMPTS, shown=[" ".join(WORDS[:300]), "word0300 …"]
    )
    backend = FakeBackend(reply="never")
    h = await make_slack(assistant_with(tmp_path, backend))
    await h.bot.resumer.swept.wait()
    [lost] = bot_messages(slack_api)
    assert lost["ts"] == left[0] and messages.ANSWER_LOST in lost["text"]
    assert [c.args["ts"] for c in slack_api.of("chat.delete")] == left[1:] and backend.calls == []


async def test_a_part_deleted_before_its_process_could_note_it_is_posted_again(
    make_slack, slack_api, tmp_path
):
    # The dead process deleted its last message (a shorter final text) and died before noting so.
    q = top_level(question_id="command:trig.gone")
    left = await left_by_a_dead_process(slack_api, tmp_path, q, shown=["part one", "part two"])
    slack_api.messages["C1"] = [m for m in slack_api.messages["C1"] if m["ts"] != left[1]]
    h = await make_slack(assistant_with(tmp_path, FakeBackend(reply=LONG)))
    await slack_api.wait_for(finals)
    await h.bot.resumer.swept.wait()
    shown = " ".join(m["text"] for m in bot_messages(slack_api))
    assert all(shown.count(w) == 1 for w in WORDS[::50])
    assert bot_messages(slack_api)[0]["ts"] == left[0] and len(bot_messages(slack_api)) == 3


@pytest.mark.parametrize("thread", [None, "1700000000.000001"], ids=["top-level", "in-a-thread"])
async def test_a_part_posted_but_not_noted_is_found_by_its_metadata_and_not_left_behind(
    make_slack, slack_api, tmp_path, thread
):
    q = question(question_id="event:EvStray", reply_thread=thread, history_thread=None, message_ts=None)
    if thread:
        slack_api.add_message("C1", thread, user="U1", text=f"<@{BOT_USER_ID}> long?", thread_ts=thread)
    left = await left_by_a_dead_process(slack_api, tmp_path, q, shown=["part one", "part two"])
    ours = {"event_type": ANSWER_EVENT, "event_payload": {"question_id": q.question_id}}
    other = {"event_type": ANSWER_EVENT, "event_payload": {"question_id": "event:EvOther"}}
    stray, unrelated = slack_api.next_ts(), slack_api.next_ts()
    for ts, meta in ((stray, ours), (unrelated, other)):  # the dead one's third part; another answer
        slack_api.add_message(
            "C1", ts, text="…", user=BOT_USER_ID, bot_id=BOT_ID, thread_ts=thread, metadata=meta
        )
    h = await make_slack(assistant_with(tmp_path, FakeBackend(reply="Short this time.")))
    [final] = await slack_api.wait_for(finals)
    await h.bot.resumer.swept.wait()
    assert final.args["ts"] == left[0]
    assert [c.args["ts"] for c in slack_api.of("chat.delete")] == [left[1], stray]
    assert [m["ts"] for m in bot_messages(slack_api)] == [left[0], unrelated]
    assert slack_api.messages["C1"][-1]["text"] == "…"  # another question's answer is left alone


async def test_every_part_of_an_answer_carries_its_question_in_its_metadata(make_slack, slack_api, tmp_path):
    h = await make_slack(assistant_with(tmp_path, FakeBackend(reply=LONG)))
    await h.send(command_body("/ask", "long please", trigger_id="trig.meta"))
    await slack_api.wait_for(finals)
    await h.bot.drain()
    tags = [m.get("metadata") for m in bot_messages(slack_api)]
    assert len(tags) == 3
    assert tags == [{"event_type": ANSWER_EVENT, "event_payload": {"question_id": "command:trig.meta"}}] * 3


def test_a_note_from_before_split_answers_were_noted_still_resumes():
    q = top_level(question_id="command:trig.old-note")
    old = json.loads(q.note(["1700000001.000001"]))
    del old["messages"]  # what a note held before: the placeholder only
    resumed, posted = Question.resumed(json.dumps(old), client=None)
    assert posted == ["1700000001.000001"] and resumed.question_id == q.question_id


@dataclass
class StallingBackend(FakeBackend):
    """Streams its whole reply, then never says it is done: the process dies while it waits."""

    stalled: asyncio.Event = field(default_factory=asyncio.Event)

    async def stream(self, messages, options):
        async for chunk in super().stream(messages, options):
            if chunk.done:
                self.stalled.set()
                await asyncio.Event().wait()
            yield chunk


async def test_a_split_answer_cut_off_mid_stream_is_noted_whole_and_finished_in_its_messages(
    make_slack, slack_api, tmp_path
):
    stalling = StallingBackend(reply=LONG)
    first = await make_slack(assistant_with(tmp_path, stalling))
    notes: list[list[str]] = []
    whole = asyncio.Event()
    note = first.db.note

    async def recording(surface: str, event_id: str, text: str) -> None:
        await note(surface, event_id, text)
        notes.append(Question.resumed(text, client=None)[1])
        if len(notes[-1]) == 3:
            whole.set()

    first.db.note = recording  # observe what the answerer notes with its claim, as it notes it
    await first.send(command_body("/ask", "long please", trigger_id="trig.cut"))
    async with asyncio.timeout(20):
        await stalling.stalled.wait()
        await whole.wait()
    posted = [m["ts"] for m in bot_messages(slack_api)]
    assert len(slack_api.of("chat.postMessage")) == 3 and notes[-1] == posted  # every message, in order
    await first.bot.aclose(0)  # the answer is cut off: its claim is released unfinished

    backend = FakeBackend(reply="Shorter, after the restart.")
    again = await make_slack(assistant_with(tmp_path, backend))
    [final] = await slack_api.wait_for(finals)
    await again.bot.resumer.swept.wait()
    assert final.args["ts"] == notes[-1][0]
    assert [c.args["ts"] for c in slack_api.of("chat.delete")] == notes[-1][1:]
    assert len(slack_api.of("chat.postMessage")) == 3  # nothing posted after the cut
    [answer] = bot_messages(slack_api)
    assert "Shorter, after the restart." in answer["text"] and len(backend.calls) == 1


# --- the first placeholder, posted but not noted -----------------------------------------------


async def posted_not_noted(slack_api, tmp_path, q: Question, *, attempts: int = 1) -> str:
    """What a process killed between posting its placeholder and noting it leaves: its claim, the
    note written before the post (no messages), and a "Thinking…" carrying the question's metadata."""
    db = Database(make_settings(tmp_path).database_url)
    try:
        await _leave(slack_api, db, q, attempts, shown=())
    finally:
        await db.aclose()
    ts = slack_api.next_ts()
    meta = {"event_type": ANSWER_EVENT, "event_payload": {"question_id": q.question_id}}
    slack_api.add_message(
        q.channel,
        ts,
        text=messages.THINKING,
        user=BOT_USER_ID,
        bot_id=BOT_ID,
        thread_ts=q.reply_thread,
        metadata=meta,
    )
    return ts


@pytest.mark.parametrize("thread", [False, True], ids=["slash-command", "mention-in-a-thread"])
async def test_a_first_placeholder_posted_but_not_noted_is_adopted_not_left_behind(
    make_slack, slack_api, tmp_path, thread
):
    slack_api.realtime = (
        True  # a slash command's messages are looked for after its asked_at (this host's clock)
    )
    if thread:
        root = slack_api.next_ts()
        slack_api.add_message("C1", root, user="U1", text=f"<@{BOT_USER_ID}> first?", thread_ts=root)
        asked = slack_api.next_ts()
        slack_api.add_message("C1", asked, user="U1", text=f"<@{BOT_USER_ID}> And Y?", thread_ts=root)
        q = question(question_id="event:EvFirst", reply_thread=root, history_thread=root, message_ts=asked)
    else:
        q = top_level(question_id="command:trig.first")
    # An older answer to another question, and the dead one's placeholder after the question.
    other = {"event_type": ANSWER_EVENT, "event_payload": {"question_id": "command:trig.other"}}
    slack_api.add_message(
        "C1",
        slack_api.next_ts(),
        text="Thinking…",
        user=BOT_USER_ID,
        bot_id=BOT_ID,
        thread_ts=q.reply_thread,
        metadata=other,
    )
    placeholder = await posted_not_noted(slack_api, tmp_path, q)
    backend = FakeBackend(reply="Answered in the placeholder.")
    h = await make_slack(assistant_with(tmp_path, backend))  # the restarted process: it sweeps at start
    [final] = await slack_api.wait_for(finals)
    await h.bot.resumer.swept.wait()
    assert final.method == "chat.update" and final.args["ts"] == placeholder
    assert not slack_api.of("chat.postMessage")  # no second placeholder
    method = "conversations.replies" if thread else "conversations.history"
    lookups = [c for c in slack_api.of(method) if c.args.get("include_all_metadata") in ("1", "true")]
    assert len(lookups) == 1  # one bounded lookup, after the question
    assert all(float(c.args["oldest"]) >= float(q.message_ts or q.asked_at - 120.001) for c in lookups)
    ours = [
        m
        for m in bot_messages(slack_api)
        if (m.get("metadata") or {}).get("event_payload") == {"question_id": q.question_id}
    ]
    assert [m["ts"] for m in ours] == [placeholder] and "Answered in the placeholder." in ours[0]["text"]
    assert [m["text"] for m in bot_messages(slack_api)][
        0
    ] == "Thinking…"  # the other question's is left alone
    assert await h.bot.resumer.sweep() == 0 and len(backend.calls) == 1


async def test_a_placeholder_a_page_away_is_still_found(make_slack, slack_api, tmp_path):
    slack_api.realtime = True
    q = top_level(question_id="command:trig.busy")
    placeholder = await posted_not_noted(slack_api, tmp_path, q)
    for i in range(250):  # a busy channel: history pages newest first, so the placeholder is on page two
        slack_api.add_message("C1", slack_api.next_ts(), user="U2", text=f"chatter {i}")
    h = await make_slack(assistant_with(tmp_path, FakeBackend(reply="Found it.")))
    [final] = await slack_api.wait_for(finals)
    await h.bot.resumer.swept.wait()
    assert final.args["ts"] == placeholder and not slack_api.of("chat.postMessage")
    pages = slack_api.of("conversations.history")
    assert len(pages) == 2 and pages[1].args.get("cursor")


async def test_a_note_without_messages_and_nothing_posted_gets_one_new_placeholder(
    make_slack, slack_api, tmp_path
):
    # The process died after noting the question but before Slack had the placeholder.
    slack_api.realtime = True
    q = top_level(question_id="command:trig.unposted")
    db = Database(make_settings(tmp_path).database_url)
    try:
        await _leave(slack_api, db, q, 1, shown=())
    finally:
        await db.aclose()
    backend = FakeBackend(reply="Answered anew.")
    h = await make_slack(assistant_with(tmp_path, backend))
    [final] = await slack_api.wait_for(finals)
    await h.bot.resumer.swept.wait()
    [posted] = slack_api.of("chat.postMessage")
    [answer] = bot_messages(slack_api)
    assert final.args["ts"] == answer["ts"] and "Answered anew." in answer["text"]
    assert len(backend.calls) == 1 and await h.bot.resumer.sweep() == 0


async def test_a_given_up_question_says_so_in_its_unnoted_placeholder(make_slack, slack_api, tmp_path):
    slack_api.realtime = True
    q = top_level(question_id="command:trig.poison-first")
    placeholder = await posted_not_noted(slack_api, tmp_path, q, attempts=MAX_ATTEMPTS)
    backend = FakeBackend(reply="never")
    h = await make_slack(assistant_with(tmp_path, backend))
    await h.bot.resumer.swept.wait()
    [lost] = bot_messages(slack_api)
    assert lost["ts"] == placeholder and messages.ANSWER_LOST in lost["text"]
    assert not slack_api.of("chat.postMessage") and backend.calls == []


def test_the_note_written_before_the_first_message_names_none():
    q = top_level(question_id="command:trig.pre")
    resumed, posted = Question.resumed(q.note([]), client=None)
    assert posted == [] and resumed.asked_at == q.asked_at
