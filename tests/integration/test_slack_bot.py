"""The real slack-bolt app and real slack_sdk client against the fake Slack Web API on loopback."""

from __future__ import annotations

import asyncio
import csv
import json
import logging
import time
from collections.abc import Sequence
from urllib.parse import urlencode

from click.testing import CliRunner
from prometheus_client import REGISTRY as METRICS_REGISTRY

from bot import messages
from bot.slack.feedback import FeedbackStore
from core.assistant import Assistant
from core.contracts import Hit
from core.errors import BackendUnavailable
from core.llm.fake import FakeBackend
from core.llm.router import Router
from core.refusals import Reason
from server.cli import main as cli_main
from tests.fixtures.core import make_settings
from tests.fixtures.slack_api import BOT_ID, BOT_USER_ID, command_body, event_body
from tests.fixtures.tables import table_settings


def assistant_with(tmp_path, backend: FakeBackend, retriever=None, **retrieval) -> Assistant:
    """An assistant over ``backend`` (and a retriever), with default settings (``retrieval`` overrides)."""
    settings = make_settings(tmp_path, **({"retrieval": retrieval} if retrieval else {}))
    return Assistant(
        settings, Router(local=backend, remote=None, routing=settings.llm.routing), retriever=retriever
    )


class RecordingRetriever:
    """Returns fixed hits and records the ACL each search was made with."""

    def __init__(self, hits: Sequence[Hit]) -> None:
        self.hits = list(hits)
        self.acls: list[frozenset[str] | None] = []

    async def search(self, query: str, *, acl: frozenset[str] | None, k: int) -> Sequence[Hit]:
        self.acls.append(acl)
        return self.hits[:k]


def hit(n: int, uri: str) -> Hit:
    return Hit(
        chunk_id=f"c{n}", doc_id=f"d{n}", uri=uri, title=f"Doc {n}", text=f"Fact number {n}.", score=0.9
    )


def finals(calls):
    """chat.update / chat.postMessage calls that carry a finished answer (the footer or the buttons)."""
    return [
        c
        for c in calls
        if c.method in ("chat.update", "chat.postMessage")
        and any(b.get("type") == "actions" for b in c.blocks())
    ]


def mention(
    text: str, *, ts: str, user: str = "U1", channel: str = "C1", thread_ts: str | None = None
) -> dict:
    event = {
        "type": "app_mention",
        "user": user,
        "text": f"<@{BOT_USER_ID}> {text}",
        "ts": ts,
        "channel": channel,
        "event_ts": ts,
    }
    if thread_ts:
        event["thread_ts"] = thread_ts
    return event


async def test_ask_acknowledges_before_the_model_works(make_slack, slack_api, tmp_path):
    held = asyncio.Event()  # the model produces nothing until the acknowledgement has been seen
    backend = FakeBackend(reply="Slow but sure.", hold=held)
    h = await make_slack(assistant_with(tmp_path, backend))
    body = command_body("/ask", "What is Hearth?", response_url=slack_api.response_url())
    resp = await asyncio.wait_for(h.send(body), 10)  # an ack that waited on the model never comes
    assert resp.status == 200
    assert not finals(slack_api.calls)
    held.set()
    done = await slack_api.wait_for(finals)
    assert "Slow but sure." in done[-1].blocks_text()
    placeholder = slack_api.of("chat.postMessage")[0]
    assert placeholder.args["channel"] == "C1"
    assert "<@U1> asked:" in placeholder.blocks_text() and "What is Hearth?" in placeholder.blocks_text()
    assert placeholder.args["unfurl_links"] is False and placeholder.args["unfurl_media"] is False
    footer = done[-1].blocks_text()
    assert "Answered by fake-model (local)" in footer


async def test_event_retries_answer_once_even_across_a_restart(make_slack, slack_api, tmp_path):
    backend = FakeBackend(reply="One answer only.")
    h = await make_slack(assistant_with(tmp_path, backend))
    body = event_body(mention("hello?", ts="1700000100.000100"), event_id="Ev001")
    assert (await h.send(body)).status == 200
    assert (await h.send(body, retry_num=1)).status == 200
    await h.bot.drain()
    # A new process (new bot, new engine connection) receiving Slack's second retry.
    again = await make_slack(assistant_with(tmp_path, backend))
    assert (await again.send(body, retry_num=2)).status == 200
    await again.bot.drain()
    assert len(backend.calls) == 1
    assert len(slack_api.of("chat.postMessage")) == 1
    assert len(finals(slack_api.calls)) == 1


async def test_mention_answers_in_thread_with_history(make_slack, slack_api, tmp_path):
    backend = FakeBackend(reply="Y is the other thing.")
    h = await make_slack(assistant_with(tmp_path, backend))
    root = "1700000000.000001"
    slack_api.add_message("C1", root, user="U1", text=f"<@{BOT_USER_ID}> What is X?", thread_ts=root)
    slack_api.add_message(
        "C1", "1700000000.000002", user=BOT_USER_ID, bot_id=BOT_ID, text="X is a thing.", thread_ts=root
    )
    body = event_body(mention("And Y?", ts="1700000000.000003", thread_ts=root), event_id="Ev002")
    assert (await h.send(body)).status == 200
    done = await slack_api.wait_for(finals)
    posted = slack_api.of("chat.postMessage")[0]
    assert posted.args["thread_ts"] == root
    assert "Y is the other thing." in done[-1].blocks_text()
    prompt = "\n".join(m.content for m in backend.calls[0].messages)
    assert "What is X?" in prompt and "X is a thing." in prompt and "And Y?" in prompt
    assert f"<@{BOT_USER_ID}>" not in prompt
    replies = slack_api.of("conversations.replies")[0]
    assert replies.args["ts"] == root


async def test_a_long_thread_is_answered_from_its_latest_turns(make_slack, slack_api, tmp_path):
    backend = FakeBackend(reply="Noted.")
    h = await make_slack(assistant_with(tmp_path, backend))
    root = "1700000000.000001"
    slack_api.add_message("C1", root, user="U1", text=f"<@{BOT_USER_ID}> question-001", thread_ts=root)
    for i in range(2, 251):  # 250 messages: more than one page of conversations.replies
        ts = f"1700000000.{i:06d}"
        if i % 2:
            slack_api.add_message("C1", ts, user="U1", text=f"question-{i:03d}", thread_ts=root)
        else:
            slack_api.add_message(
                "C1", ts, user=BOT_USER_ID, bot_id=BOT_ID, text=f"answer-{i:03d}", thread_ts=root
            )
    body = event_body(mention("And the last one?", ts="1700000001.000001", thread_ts=root), event_id="Ev250")
    assert (await h.send(body)).status == 200
    await h.bot.drain()
    prompt = "\n".join(m.content for m in backend.calls[0].messages)
    # The newest turns are there, word for word; the oldest answers are not (at most summarised).
    assert "question-249" in prompt and "answer-250" in prompt and "answer-248" in prompt
    assert "answer-002" not in prompt and "answer-010" not in prompt
    pages = slack_api.of("conversations.replies")
    assert len(pages) >= 2 and pages[1].args.get("cursor"), [p.args for p in pages]


async def test_top_level_mention_starts_a_thread_without_history(make_slack, slack_api, tmp_path):
    backend = FakeBackend(reply="Sure.")
    h = await make_slack(assistant_with(tmp_path, backend))
    await h.send(event_body(mention("hi", ts="1700000200.000001"), event_id="Ev003"))
    await slack_api.wait_for(finals)
    assert slack_api.of("chat.postMessage")[0].args["thread_ts"] == "1700000200.000001"
    assert not slack_api.of("conversations.replies")


async def test_direct_message_is_answered_in_the_dm(make_slack, slack_api, tmp_path):
    backend = FakeBackend(reply="Hello from the DM.")
    h = await make_slack(assistant_with(tmp_path, backend))
    dm = {
        "type": "message",
        "channel_type": "im",
        "user": "U7",
        "text": "how do I deploy?",
        "ts": "1700000300.000001",
        "channel": "D7",
    }
    await h.send(event_body(dm, event_id="Ev004"))
    done = await slack_api.wait_for(finals)
    assert done[-1].args["channel"] == "D7"
    assert slack_api.of("chat.postMessage")[0].args.get("thread_ts") is None
    # Messages in ordinary channels and the bot's own messages are acknowledged and ignored.
    channel_msg = {**dm, "channel_type": "channel", "channel": "C1", "ts": "1700000300.000002"}
    own = {**dm, "user": BOT_USER_ID, "bot_id": BOT_ID, "ts": "1700000300.000003"}
    assert (await h.send(event_body(channel_msg, event_id="Ev005"))).status == 200
    assert (await h.send(event_body(own, event_id="Ev006"))).status == 200
    await h.bot.drain()
    assert len(backend.calls) == 1


async def test_streaming_updates_are_throttled(make_slack, slack_api, tmp_path):
    words = " ".join(f"w{i}" for i in range(40))
    backend = FakeBackend(reply=words, token_delay=0.03)
    h = await make_slack(assistant_with(tmp_path, backend), update_interval_s=0.2)
    await h.send(command_body("/ask", "stream please", response_url=slack_api.response_url()))
    await slack_api.wait_for(finals)
    ts = slack_api.of("chat.postMessage")[0].at
    updates = [c.at for c in slack_api.of("chat.update")]
    assert len(updates) >= 3, "expected streamed updates before the final one"
    # Arrival times jitter, so no gap is measured here (tests/unit/test_slack_stream.py checks the
    # throttle on an injected clock); the count still cannot exceed one per interval, plus the final.
    assert len(updates) <= (updates[-1] - ts) / 0.2 + 2
    partial = slack_api.of("chat.update")[0].blocks_text()
    assert partial.endswith("…") and "w0" in partial


async def test_long_answers_are_split_across_messages(make_slack, slack_api, tmp_path):
    words = [f"word{i:04d}" for i in range(900)]  # about 8,000 characters
    backend = FakeBackend(reply=" ".join(words))
    h = await make_slack(assistant_with(tmp_path, backend))
    await h.send(command_body("/ask", "long please", response_url=slack_api.response_url()))
    await slack_api.wait_for(finals)
    await h.bot.drain()
    posts = slack_api.of("chat.postMessage")
    assert len(posts) >= 3
    final_texts = [msg["text"] for msg in slack_api.messages["C1"]]
    for call in slack_api.calls:
        for block in call.blocks():
            if block.get("type") == "section":
                assert len(block["text"]["text"]) <= 3000
    joined = " ".join(final_texts)
    positions = [joined.find(w) for w in words]
    assert all(p >= 0 for p in positions) and positions == sorted(positions)
    # Only the last message carries the footer and the buttons.
    last_ts = slack_api.messages["C1"][-1]["ts"]
    last = finals(slack_api.calls)
    assert len(last) == 1 and last[0].args["ts"] == last_ts


async def test_acl_mapping_reaches_retrieval_and_only_cited_sources_are_links(
    make_slack, slack_api, tmp_path
):
    retriever = RecordingRetriever([hit(1, "https://wiki.example/one"), hit(2, "https://wiki.example/two")])
    backend = FakeBackend(
        reply="It is fact one [1]. Also see https://evil.example/steal?d=secret "
        "and ![x](https://evil.example/p.png) and [two](https://wiki.example/two)."
    )
    slack_api.usergroups["S1"] = ["U1"]
    slack_api.usergroups["S2"] = ["U9"]
    h = await make_slack(
        # Unchecked: the verifier would drop the unsupported link sentence; this is about rendering it.
        assistant_with(tmp_path, backend, retriever, grounding="off"),
        users={"U1": ["group:eng"]},
        user_groups={"S1": ["group:ops"], "S2": ["group:hr"]},
        channels={"C1": ["chan:general"]},
    )
    await h.send(command_body("/ask", "what is fact one?", response_url=slack_api.response_url()))
    done = await slack_api.wait_for(finals)
    # Posted in the channel: the answer is built for the channel's audience; the asker's own
    # grants (user, groups) only count what they would have added, for the private offer.
    channel = frozenset({"public", "chan:general"})
    asker = frozenset({"public", "user:slack:U1", "group:eng", "group:ops", "chan:general"})
    assert retriever.acls[:2] == [channel, asker]
    text = done[-1].blocks_text()
    assert "<https://wiki.example/one|Doc 1>" in text
    assert "https://wiki.example/two" not in text.replace("`https://wiki.example/two`", "")
    assert "<https://evil.example" not in text and "`https://evil.example/steal?d=secret`" in text
    assert "`https://evil.example/p.png`" in text
    # Another user in another channel holds only the defaults.
    await h.send(
        command_body("/ask", "again", user="U2", channel="C2", response_url=slack_api.response_url())
    )
    await h.bot.drain()
    assert retriever.acls[2] == frozenset({"public"})  # C2's audience: the defaults
    assert len(slack_api.of("usergroups.users.list")) == 2  # cached for the second question


async def test_what_a_slack_user_may_not_read_never_reaches_the_model(
    make_slack, slack_api, tmp_path, corpus_retriever
):
    # The real store over the corpus: salaries.md is readable by group:hr (and user:alice) only.
    question = "What are the salary bands for engineers, and the vacation payout?"
    allowed = await corpus_retriever.search(question, acl=frozenset({"public", "group:hr"}), k=5)
    assert allowed[0].doc_id == "hr:salaries.md"  # the question does find it for a reader …
    backend = FakeBackend(reply="See [1].")
    # The hash embedder models no meaning: keep keyword hits (no dense similarity cut-off).
    h = await make_slack(assistant_with(tmp_path, backend, corpus_retriever, min_similarity=0))
    await h.send(command_body("/ask", question, user="U2", response_url=slack_api.response_url()))
    await h.bot.drain()
    [call] = backend.calls
    prompt = call.messages[-1].content
    assert "vacation days" in prompt  # … U2 is answered from what U2 may read …
    assert "70k to 85k EUR" not in prompt and "Salary bands" not in prompt  # … and nothing else
    assert "salaries.md" not in json.dumps([c.args for c in slack_api.calls])


async def test_nothing_found_says_so_without_a_model_footer(make_slack, slack_api, tmp_path):
    backend = FakeBackend(reply="never used")
    h = await make_slack(assistant_with(tmp_path, backend, RecordingRetriever([])))
    await h.send(command_body("/ask", "unknown topic", response_url=slack_api.response_url()))
    done = await slack_api.wait_for(finals)
    text = done[-1].blocks_text()
    assert messages.NOT_FOUND in text and "Answered by" not in text
    assert not backend.calls


async def test_forged_and_stale_signatures_are_rejected_with_a_log_line(make_slack, slack_api, caplog):
    h = await make_slack()
    body = command_body("/ask", "hi", response_url=slack_api.response_url())
    caplog.set_level(logging.WARNING, logger="bot.slack.http")
    forged = await h.send(body, secret="not-the-secret")
    stale = await h.send(body, timestamp=int(time.time()) - 600)
    unsigned = await h.client.post("/slack/events", data=body)
    assert [forged.status, stale.status, unsigned.status] == [401, 401, 401]
    assert sum("invalid or stale signature" in r.message for r in caplog.records) == 3
    await h.bot.drain()
    assert not slack_api.calls


async def test_malformed_payloads_get_400(make_slack, slack_api):
    h = await make_slack()
    for body in (
        '{"type": "event_callback"}',
        "{not json",
        "payload=%7Bbroken",
        "hello=world",
        urlencode({"command": "/ask", "text": "no user"}),
    ):
        resp = await h.send(body)
        assert resp.status == 400, body
    # Unsigned garbage is not told that it is malformed.
    assert (await h.client.post("/slack/events", data="{not json")).status == 401
    await h.bot.drain()
    assert not [c for c in slack_api.calls if c.method != "auth.test"]


async def test_url_verification_challenge(make_slack):
    h = await make_slack()
    resp = await h.send(json.dumps({"type": "url_verification", "challenge": "abc123", "token": "x"}))
    assert resp.status == 200 and "abc123" in await resp.text()


async def test_slack_429_is_retried_after_retry_after(make_slack, slack_api, tmp_path):
    h = await make_slack(assistant_with(tmp_path, FakeBackend(reply="Patience.")))
    slack_api.rate_limit("chat.postMessage", times=1, retry_after=1)
    await h.send(command_body("/ask", "hi", response_url=slack_api.response_url()))
    await slack_api.wait_for(finals)
    tries = [c for c in slack_api.calls if c.method == "chat.postMessage"]
    assert [c.status for c in tries] == [429, 200]
    assert tries[1].at - tries[0].at >= 0.95


async def test_model_and_remote_down_gives_an_apology_without_traceback(make_slack, slack_api, tmp_path):
    backend = FakeBackend(error=BackendUnavailable("llama.cpp exploded: CUDA error 700 in ggml.c"))
    h = await make_slack(assistant_with(tmp_path, backend))
    await h.send(command_body("/ask", "hi", response_url=slack_api.response_url()))
    await h.bot.drain()
    update = slack_api.of("chat.update")[-1]
    assert messages.MODEL_DOWN in update.blocks_text()
    everything = json.dumps([c.args for c in slack_api.calls])
    assert "Traceback" not in everything and "CUDA" not in everything and "exploded" not in everything


async def test_model_failing_mid_answer_ends_in_one_plain_sentence(make_slack, slack_api, tmp_path):
    from core.audit import AuditLog, recent
    from core.intake_metrics import Metrics
    from core.metrics import ANSWERS

    died = BackendUnavailable("llama-server died: CUDA error 700 in ggml.c")
    words = " ".join(f"w{i}" for i in range(30))
    backend = FakeBackend(reply=words, token_delay=0.05, error=died, fail_after=20)
    audits: list[AuditLog] = []

    def observers(db):
        audit = AuditLog(db)
        audit.start()
        audits.append(audit)
        return [audit, Metrics()]

    errors_before = ANSWERS.labels("slack", "ask", "error")._value.get()
    h = await make_slack(assistant_with(tmp_path, backend), observers=observers)
    await h.send(command_body("/ask", "stream then die", response_url=slack_api.response_url()))
    await h.bot.drain()
    updates = slack_api.of("chat.update")
    # Some of the answer was already on screen before the model died …
    assert any("w0" in u.blocks_text() and u.blocks_text().endswith("…") for u in updates[:-1])
    # … and what stays is one plain apology: no half answer, no footer, no detail, no traceback.
    # (a slash command's reply keeps its "<@U1> asked:" header line above it)
    assert updates[-1].blocks_text().splitlines()[1:] == [messages.MODEL_DOWN]
    assert "w0" not in json.dumps(updates[-1].args)
    assert len(slack_api.messages["C1"]) == 1 and "w0" not in slack_api.messages["C1"][0]["text"]
    assert not finals(slack_api.calls)
    everything = json.dumps([c.args for c in updates[-1:]])
    assert "CUDA" not in everything and "Traceback" not in everything
    await audits[0].flush()
    rows = await recent(h.db)
    assert [(r["surface"], r["status"]) for r in rows] == [("slack", "error")]
    assert "CUDA error 700" in rows[0]["error"]  # the operator gets the detail, the user does not
    assert ANSWERS.labels("slack", "ask", "error")._value.get() == errors_before + 1
    await audits[0].aclose()


async def test_limits_get_polite_messages(make_slack, slack_api, tmp_path):
    backend = FakeBackend(reply="ok")
    h = await make_slack(assistant_with(tmp_path, backend), rate_limit_per_minute=1)
    huge = "x" * 40_000
    await h.send(event_body(mention(huge, ts="1700000400.000001"), event_id="Ev010"))
    await h.bot.drain()
    eph = slack_api.of("chat.postEphemeral")[-1]
    assert "40,0" in eph.args["text"] and "4,000" in eph.args["text"] and eph.args["user"] == "U1"
    await h.send(command_body("/ask", "first", response_url=slack_api.response_url()))
    await h.send(command_body("/ask", "second", response_url=slack_api.response_url()))
    await h.bot.drain()
    hooks = slack_api.of("response_url")
    assert "please wait" in hooks[-1].args["text"]
    assert hooks[-1].args["response_type"] == "ephemeral"
    assert len(backend.calls) == 1


async def test_help_is_answered_in_the_acknowledgement(make_slack, slack_api):
    h = await make_slack()
    resp = await h.send(command_body("/hearth", "help"))
    body = await resp.json()
    assert resp.status == 200 and body["response_type"] == "ephemeral"
    assert "/ask" in body["text"] and "/data" in body["text"] and "/explain" in body["text"]


async def test_explain_guesses_the_language(make_slack, slack_api, tmp_path):
    backend = FakeBackend(reply="It prints a greeting.")
    h = await make_slack(assistant_with(tmp_path, backend))
    code = "def greet(name):\n    print(f'hello {name} &amp; bye')"
    await h.send(command_body("/explain", code, response_url=slack_api.response_url()))
    done = await slack_api.wait_for(finals)
    prompt = "\n".join(m.content for m in backend.calls[0].messages)
    assert "python" in prompt and "hello {name} & bye" in prompt
    assert "It prints a greeting." in done[-1].blocks_text()


async def test_data_renders_answer_sql_table_and_chart(
    make_slack, slack_api, tmp_path, demo_tables, table_service_factory
):
    h = await make_slack()
    await h.send(command_body("/data", "tickets per team?", response_url=slack_api.response_url()))
    await h.bot.drain()
    assert messages.REFUSALS[Reason.TABLES_UNAVAILABLE] in slack_api.of("response_url")[-1].args["text"]

    sql = (
        "SELECT team, count(*) AS closed FROM tickets WHERE status = 'closed' "
        "GROUP BY team ORDER BY closed DESC"
    )
    backend = FakeBackend(reply=sql)
    assistant = assistant_with(tmp_path, FakeBackend())
    assistant.tables = table_service_factory(table_settings(tmp_path, demo_tables.specs()), backend)
    h2 = await make_slack(assistant)
    await h2.send(
        command_body("/data", "How many tickets did each team close?", response_url=slack_api.response_url())
    )
    done = await slack_api.wait_for(finals)
    await h2.bot.drain()
    text = done[-1].blocks_text()
    assert "platform: 121" in text and "SELECT team, COUNT(*) AS closed FROM tickets" in text
    assert "platform |    121" in text and "Answered by fake-model (local)" in text
    assert text.count("SELECT team") == 1  # the SQL is shown once, as code
    complete = slack_api.of("files.completeUploadExternal")[-1]
    assert complete.args["channel_id"] == "C1"
    assert complete.args["thread_ts"] == slack_api.messages["C1"][0]["ts"]  # under the answer
    upload = next(iter(slack_api.uploads.values()))
    assert upload["filename"].endswith(".png") and upload["data"][:8] == b"\x89PNG\r\n\x1a\n"


async def test_feedback_buttons_store_votes(make_slack, slack_api, tmp_path):
    before = METRICS_REGISTRY.get_sample_value(
        "hearth_feedback_votes_total", {"surface": "slack", "vote": "down"}
    )
    h = await make_slack(assistant_with(tmp_path, FakeBackend(reply="Rated answer.")))
    await h.send(
        command_body("/ask", "rate me", trigger_id="trig-rate", response_url=slack_api.response_url())
    )
    done = await slack_api.wait_for(finals)
    buttons = next(b for b in done[-1].blocks() if b["type"] == "actions")["elements"]
    down = next(b for b in buttons if b["action_id"].endswith("_down"))
    payload = {
        "type": "block_actions",
        "user": {"id": "U5"},
        "team": {"id": "T0TEAM"},
        "api_app_id": "A1",
        "channel": {"id": "C1"},
        "message": {"ts": done[-1].args.get("ts", "")},
        "container": {"type": "message"},
        "trigger_id": "t1",
        "response_url": slack_api.response_url("act"),
        "actions": [
            {
                "action_id": down["action_id"],
                "block_id": "hearth_feedback",
                "value": down["value"],
                "type": "button",
            }
        ],
    }
    resp = await h.send(urlencode({"payload": json.dumps(payload)}))
    assert resp.status == 200
    await h.bot.drain()
    answer_id = down["value"].split(":", 1)[1]
    store = FeedbackStore(h.db)
    assert await store.votes(answer_id) == {"U5": -1}
    record = await store.answer(answer_id)
    assert record is not None and record.question == "rate me" and record.question_id == "command:trig-rate"
    assert messages.SLACK_FEEDBACK_THANKS in slack_api.of("chat.postEphemeral")[-1].args["text"]
    assert (
        METRICS_REGISTRY.get_sample_value("hearth_feedback_votes_total", {"surface": "slack", "vote": "down"})
        == (before or 0) + 1
    )
    # The operator sees the vote, with what was asked and answered, from the CLI.
    cfg = tmp_path / "feedback.yaml"
    cfg.write_text(f"database:\n  url: '{h.db.url}'\n")
    listed = await asyncio.to_thread(
        CliRunner().invoke, cli_main, ["--config", str(cfg), "feedback", "list", "--down", "--json"]
    )
    assert listed.exit_code == 0, listed.output
    rows_json = [json.loads(line) for line in listed.stdout.splitlines()]
    assert len(rows_json) == 1, listed.output
    row = rows_json[0]
    assert row["vote"] == -1 and row["user_id"] == "U5" and row["question"] == "rate me"
    assert row["answer"].startswith("Rated answer.") and row["answer_id"] == answer_id
    ups = await asyncio.to_thread(
        CliRunner().invoke, cli_main, ["--config", str(cfg), "feedback", "list", "--up"]
    )
    assert ups.exit_code == 0 and "No feedback matches." in ups.output
    out = tmp_path / "votes.csv"
    exported = await asyncio.to_thread(
        CliRunner().invoke, cli_main, ["--config", str(cfg), "feedback", "export", str(out), "--since", "1h"]
    )
    assert exported.exit_code == 0 and "Wrote 1 vote(s)" in exported.output
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert [(r["user_id"], r["vote"], r["question"]) for r in rows] == [("U5", "-1", "rate me")]


async def test_channel_without_the_bot_gets_a_private_hint(make_slack, slack_api, tmp_path):
    backend = FakeBackend(reply="unused")
    h = await make_slack(assistant_with(tmp_path, backend))
    slack_api.fail("chat.postMessage", "not_in_channel")
    await h.send(command_body("/ask", "hello?", channel="C404", response_url=slack_api.response_url()))
    await h.bot.drain()
    hint = slack_api.of("response_url")[-1].args
    assert hint["text"] == messages.SLACK_NOT_IN_CHANNEL and hint["response_type"] == "ephemeral"
    assert not backend.calls


async def test_an_empty_model_answer_is_explained(make_slack, slack_api, tmp_path):
    h = await make_slack(assistant_with(tmp_path, FakeBackend(reply="   ")))
    await h.send(command_body("/ask", "anything?", response_url=slack_api.response_url()))
    done = await slack_api.wait_for(finals)
    assert messages.SLACK_EMPTY_ANSWER in done[-1].blocks_text()
    assert all(c.args.get("text") for c in slack_api.calls if c.method.startswith("chat."))


async def test_an_answer_citing_two_chunks_of_one_page_lists_the_page_once_with_both_numbers(
    make_slack, slack_api, tmp_path
):
    page = "https://wiki.example/leave"
    retriever = RecordingRetriever(
        [
            Hit("leave#1", "wiki:leave", page, "Leave policy", "Vacation is 25 days.", 0.9, "Vacation"),
            Hit("form#1", "wiki:form", "https://wiki.example/form", "Form", "Use form L1.", 0.8, ""),
            Hit("leave#2", "wiki:leave", page, "Leave policy", "Unused days are paid out.", 0.7, "Payout"),
        ]
    )
    backend = FakeBackend(reply="Vacation is 25 days [1]. Unused days are paid out [3]. Use form L1 [2].")
    h = await make_slack(assistant_with(tmp_path, backend, retriever, grounding="off"))
    await h.send(command_body("/ask", "how much leave?", response_url=slack_api.response_url()))
    [done] = await slack_api.wait_for(finals)
    [sources] = [b for b in done.blocks() if b["type"] == "context" and "Sources" in str(b)]
    line = sources["elements"][0]["text"]
    assert line == (
        f"*{messages.SOURCES}:* [1, 3] <{page}|Leave policy> (Vacation; Payout)"
        " · [2] <https://wiki.example/form|Form>"
    )
