"""`hearth serve` as a real subprocess with the Slack bot: real slack_sdk → fake Slack API, real
OpenAI-compatible backend → fake API; one event gives one answer even across a restart."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from tests.fixtures.openai_server import FakeOpenAI
from tests.fixtures.slack_api import (
    BOT_USER_ID,
    SIGNING_SECRET,
    FakeSlackApi,
    command_body,
    event_body,
    signed_headers,
    slack_section,
)


def config(openai_server: FakeOpenAI, slack_api: FakeSlackApi) -> dict[str, Any]:
    return {
        "llm": {
            "local": {"enabled": False},
            "remote": {"base_url": openai_server.base_url, "api_key": "sk-test", "max_retries": 0},
        },
        "slack": slack_section(slack_api),
        "server": {"shutdown_timeout_s": 5},
    }


def finals(calls):
    return [
        c
        for c in calls
        if c.method in ("chat.update", "chat.postMessage")
        and any(b.get("type") == "actions" for b in c.blocks())
    ]


async def post(url: str, body: str, **kw: Any) -> int:
    async with aiohttp.ClientSession() as http:
        headers = signed_headers(SIGNING_SECRET, body, **kw)
        async with http.post(url + "/slack/events", data=body.encode(), headers=headers) as resp:
            return resp.status


async def test_hearth_serve_answers_slack_once_across_a_restart(hearth_serve, openai_server, slack_api):
    server = await hearth_serve(config(openai_server, slack_api))
    assert (
        await post(server.url, command_body("/ask", "What is Hearth?", response_url=slack_api.response_url()))
        == 200
    )
    done = await slack_api.wait_for(finals, within=60)
    text = done[-1].blocks_text()
    assert openai_server.reply in text and "Answered by fake-remote-model (remote)" in text

    mention = {
        "type": "app_mention",
        "user": "U1",
        "text": f"<@{BOT_USER_ID}> again?",
        "ts": "1700000900.000001",
        "channel": "C1",
        "event_ts": "1700000900.000001",
    }
    body = event_body(mention, event_id="EvRestart")
    assert await post(server.url, body) == 200
    await slack_api.wait_for(lambda calls: len(finals(calls)) == 2, within=60)
    assert await server.stop() == 0

    again = await hearth_serve(config(openai_server, slack_api))
    assert await post(again.url, body, retry_num=1) == 200
    # A later, different question proves the new process is answering; the retry was not.
    assert await post(again.url, command_body("/ask", "third?", response_url=slack_api.response_url())) == 200
    await slack_api.wait_for(lambda calls: len(finals(calls)) == 3, within=60)
    assert await again.stop() == 0
    assert len(finals(slack_api.calls)) == 3
    threads = [c.args.get("thread_ts") for c in slack_api.of("chat.postMessage")]
    assert threads.count("1700000900.000001") == 1
    logs = "\n".join(server.log_lines + again.log_lines)
    assert "xoxb-test-token" not in logs and SIGNING_SECRET not in logs
    assert "sk-test" not in logs


async def test_a_question_claimed_by_a_killed_process_is_answered_once_after_the_restart(
    hearth_serve, openai_server, slack_api
):
    import asyncio
    import signal

    openai_server.plan = ["hang"]  # the first answer never finishes: the process dies while it waits
    server = await hearth_serve(config(openai_server, slack_api))
    mention = {
        "type": "app_mention",
        "user": "U1",
        "text": f"<@{BOT_USER_ID}> are you there?",
        "ts": "1700000950.000001",
        "channel": "C1",
        "event_ts": "1700000950.000001",
    }
    body = event_body(mention, event_id="EvKilled")
    assert await post(server.url, body) == 200
    for _ in range(600):  # claimed, placeholder posted, the model asked (and hanging)
        if openai_server.requests:
            break
        await asyncio.sleep(0.05)
    assert openai_server.requests and slack_api.of("chat.postMessage")
    assert await server.stop(signal.SIGKILL) == -signal.SIGKILL
    [placeholder_ts] = [m["ts"] for m in slack_api.messages["C1"]]

    again = await hearth_serve(config(openai_server, slack_api))
    # Slack retries the event it never saw answered: the dead process's claim is taken over.
    assert await post(again.url, body, retry_num=1) == 200
    await slack_api.wait_for(lambda calls: len(finals(calls)) == 1, within=60)
    # Further retries, and a later question, give no second answer to it.
    assert await post(again.url, body, retry_num=2) == 200
    assert await post(again.url, command_body("/ask", "next?", response_url=slack_api.response_url())) == 200
    await slack_api.wait_for(lambda calls: len(finals(calls)) == 2, within=60)
    assert await post(again.url, body, retry_num=3) == 200
    assert await again.stop() == 0
    assert len(finals(slack_api.calls)) == 2  # one answer for the event, one for the later question
    # One message in the thread: the killed process's placeholder, which became the answer.
    threads = [c.args.get("thread_ts") for c in slack_api.of("chat.postMessage")]
    assert threads.count("1700000950.000001") == 1
    [first] = [m for m in slack_api.messages["C1"] if m.get("thread_ts") == "1700000950.000001"]
    assert first["ts"] == placeholder_ts and openai_server.reply in first["text"]


async def kill_while_answering(hearth_serve, openai_server, slack_api, body: str):
    """Start `hearth serve`, deliver ``body``, and SIGKILL it once the placeholder is up and the model hangs."""
    import asyncio
    import signal

    openai_server.plan = ["hang"]
    server = await hearth_serve(config(openai_server, slack_api))
    assert await post(server.url, body) == 200
    for _ in range(600):
        if openai_server.requests and slack_api.of("chat.postMessage"):
            break
        await asyncio.sleep(0.05)
    assert openai_server.requests and slack_api.of("chat.postMessage")
    assert await server.stop(signal.SIGKILL) == -signal.SIGKILL
    assert not finals(slack_api.calls)


async def test_after_a_kill_the_restarted_process_finishes_the_answer_in_its_placeholder_unasked(
    hearth_serve, openai_server, slack_api
):
    # A slash command: Slack never retries one, so only the restarted process can answer it.
    body = command_body(
        "/ask", "What is Hearth?", response_url=slack_api.response_url(), trigger_id="trig.kill"
    )
    await kill_while_answering(hearth_serve, openai_server, slack_api, body)
    [placeholder_ts] = [m["ts"] for m in slack_api.messages["C1"]]

    again = await hearth_serve(config(openai_server, slack_api))
    [final] = await slack_api.wait_for(finals, within=60)
    assert final.method == "chat.update" and final.args["ts"] == placeholder_ts
    assert [m["ts"] for m in slack_api.messages["C1"]] == [final.args["ts"]]  # one message: the answer
    assert openai_server.reply in final.blocks_text()
    assert "What is Hearth?" in final.blocks_text()  # the command's header survived the restart
    # A later question proves the process kept going; the killed question was answered once.
    assert await post(again.url, command_body("/ask", "next?", response_url=slack_api.response_url())) == 200
    await slack_api.wait_for(lambda calls: len(finals(calls)) == 2, within=60)
    assert await again.stop() == 0
    assert len(finals(slack_api.calls)) == 2
    assert len(slack_api.messages["C1"]) == 2
    assert "left unanswered by a process that stopped" in "\n".join(again.log_lines)


async def test_a_long_answer_killed_mid_stream_is_finished_in_all_its_messages_after_the_restart(
    hearth_serve, openai_server, slack_api
):
    import asyncio
    import signal

    from bot.slack.answering import Question
    from core.config import load_settings
    from core.db import Database

    # One streamed token of about 7,000 characters (three Slack messages), then the model hangs.
    openai_server.reply = "\n".join(f"line{i:04d}" for i in range(800))
    openai_server.plan = ["stall"]
    server = await hearth_serve(config(openai_server, slack_api))
    body = command_body("/ask", "long?", response_url=slack_api.response_url(), trigger_id="trig.split")
    assert await post(server.url, body) == 200
    db = Database(load_settings(server.config).database_url)
    try:
        noted: list[str] = []
        for _ in range(600):  # until the answer has noted all three of its messages with its claim
            note = await db.noted("slack", "command:trig.split")
            noted = Question.resumed(note, client=None)[1] if note else []
            if len(noted) == 3:
                break
            await asyncio.sleep(0.05)
    finally:
        await db.aclose()
    assert noted == [m["ts"] for m in slack_api.messages["C1"]]
    assert await server.stop(signal.SIGKILL) == -signal.SIGKILL

    openai_server.reply = "Shorter after the restart."
    again = await hearth_serve(config(openai_server, slack_api))
    [final] = await slack_api.wait_for(finals, within=60)
    await slack_api.wait_for(
        lambda calls: len([c for c in calls if c.method == "chat.delete"]) == 2, within=30
    )
    assert await again.stop() == 0
    assert final.method == "chat.update" and final.args["ts"] == noted[0]
    assert [c.args["ts"] for c in slack_api.of("chat.delete")] == noted[1:]
    assert len(slack_api.of("chat.postMessage")) == 3  # all posted by the killed process; none after
    [answer] = slack_api.messages["C1"]
    assert answer["ts"] == noted[0] and "Shorter after the restart." in answer["text"]


@pytest.mark.parametrize("asked", ["slash-command", "mention"])
async def test_a_process_killed_before_noting_its_first_placeholder_leaves_one_message_finished(
    hearth_serve, openai_server, slack_api, asked
):
    import signal

    # Slack posts the placeholder, but its answer never reaches the process, which dies waiting:
    # the one moment no note names the message.
    slack_api.realtime = True  # a slash command's messages are looked for by this host's clock
    slack_api.hold("chat.postMessage")
    server = await hearth_serve(config(openai_server, slack_api))
    if asked == "mention":
        ts = slack_api.next_ts()
        mention = {"type": "app_mention", "user": "U1", "text": f"<@{BOT_USER_ID}> What is Hearth?"}
        body = event_body(mention | {"ts": ts, "channel": "C1", "event_ts": ts}, event_id="EvFirst")
        question_id, thread = "event:EvFirst", ts
    else:
        body = command_body(
            "/ask", "What is Hearth?", response_url=slack_api.response_url(), trigger_id="trig.first"
        )
        question_id, thread = "command:trig.first", None
    assert await post(server.url, body) == 200
    await slack_api.wait_for(
        lambda calls: [c for c in calls if c.method == "chat.postMessage:held"], within=60
    )
    assert await server.stop(signal.SIGKILL) == -signal.SIGKILL
    [placeholder] = slack_api.messages["C1"]
    assert placeholder["metadata"]["event_payload"] == {"question_id": question_id}
    assert placeholder.get("thread_ts") == thread

    again = await hearth_serve(config(openai_server, slack_api))
    if asked == "mention":  # Slack retries the event; the startup sweep may take the claim first
        assert await post(again.url, body, retry_num=1) == 200
    [final] = await slack_api.wait_for(finals, within=60)
    assert final.method == "chat.update" and final.args["ts"] == placeholder["ts"]
    assert len(slack_api.of("chat.postMessage")) == 1  # the killed process's, adopted; none after
    [answer] = slack_api.messages["C1"]  # one message in the channel, finished
    assert answer["ts"] == placeholder["ts"] and openai_server.reply in answer["text"]
    assert "posted but not noted; reusing them" in "\n".join(again.log_lines)
    assert await again.stop() == 0
    assert len(finals(slack_api.calls)) == 1
