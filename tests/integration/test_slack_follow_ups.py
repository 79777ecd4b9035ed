"""Issue 17's Slack papercuts: thread follow-ups without a mention, and slash command names from config.

The real slack-bolt app and slack_sdk against the fake Slack Web API on loopback.
"""

from __future__ import annotations

import pytest

from bot import messages
from core.errors import ConfigError
from core.llm.fake import FakeBackend
from core.refusals import Reason
from tests.fixtures.core import make_settings
from tests.fixtures.slack_api import BOT_USER_ID, command_body, event_body
from tests.integration.test_slack_bot import assistant_with, finals, mention

ROOT_TS = "1700001000.000001"


def reply(text: str, *, ts: str, thread_ts: str | None = ROOT_TS, user: str = "U2", **extra) -> dict:
    """A plain ``message`` event in channel C1 (what message.channels delivers)."""
    event = {
        "type": "message",
        "channel": "C1",
        "channel_type": "channel",
        "text": text,
        "ts": ts,
        "event_ts": ts,
    }
    if user:
        event["user"] = user
    if thread_ts:
        event["thread_ts"] = thread_ts
    return event | extra


async def answered_mention(h, slack_api) -> None:
    """@Hearth at the top of #C1: the answer goes into the mention's thread."""
    slack_api.add_message("C1", ROOT_TS, user="U1", text=f"<@{BOT_USER_ID}> What is X?")
    assert (await h.send(event_body(mention("What is X?", ts=ROOT_TS), event_id="EvRoot"))).status == 200
    await slack_api.wait_for(finals)
    await h.bot.drain()


async def test_a_reply_in_a_thread_hearth_answered_is_answered_without_a_mention(
    make_slack, slack_api, tmp_path
):
    backend = FakeBackend(reply="Noted.")
    h = await make_slack(assistant_with(tmp_path, backend))
    await answered_mention(h, slack_api)
    ts = "1700001000.000009"
    slack_api.add_message("C1", ts, user="U2", text="and what about Z?", thread_ts=ROOT_TS)
    assert (await h.send(event_body(reply("and what about Z?", ts=ts), event_id="EvFollow"))).status == 200
    await slack_api.wait_for(lambda calls: len(finals(calls)) == 2)
    await h.bot.drain()
    follow = slack_api.of("chat.postMessage")[-1]
    assert follow.args["thread_ts"] == ROOT_TS
    prompt = "\n".join(m.content for m in backend.calls[-1].messages)
    assert "What is X?" in prompt and "and what about Z?" in prompt  # the thread's history came along
    assert len(backend.calls) == 2


@pytest.mark.parametrize(
    "event",
    [
        reply(
            "just chatting", ts="1700002000.000002", thread_ts="1700002000.000001"
        ),  # a thread without Hearth
        reply("top-level chatter", ts="1700001000.000009", thread_ts=None),
        reply("Noted, as the bot", ts="1700001000.000009", user=BOT_USER_ID),
        reply("a bot's post", ts="1700001000.000009", user="U0DEPLOY", bot_id="B0DEPLOY"),
        reply("edited", ts="1700001000.000009", subtype="message_changed"),
        reply("joined", ts="1700001000.000009", subtype="channel_join"),
        reply("the parent itself", ts=ROOT_TS),
    ],
    ids=["other-thread", "top-level", "own-message", "another-bot", "edit", "join", "thread-parent"],
)
async def test_other_channel_messages_are_left_alone(make_slack, slack_api, tmp_path, event):
    backend = FakeBackend(reply="Noted.")
    h = await make_slack(assistant_with(tmp_path, backend))
    await answered_mention(h, slack_api)
    posted = len(slack_api.of("chat.postMessage"))
    assert (await h.send(event_body(event, event_id="EvOther"))).status == 200
    await h.bot.drain()
    assert len(backend.calls) == 1 and len(slack_api.of("chat.postMessage")) == posted


async def test_a_mention_in_the_thread_is_answered_once(make_slack, slack_api, tmp_path):
    backend = FakeBackend(reply="Noted.")
    h = await make_slack(assistant_with(tmp_path, backend))
    await answered_mention(h, slack_api)
    # Slack delivers a mention in a channel both as app_mention and as message.channels.
    ts = "1700001000.000011"
    text = f"<@{BOT_USER_ID}> and Z?"
    await h.send(event_body(reply(text, ts=ts), event_id="EvAsMessage"))
    await h.send(event_body(mention("and Z?", ts=ts, thread_ts=ROOT_TS), event_id="EvAsMention"))
    await slack_api.wait_for(lambda calls: len(finals(calls)) == 2)
    await h.bot.drain()
    assert len(backend.calls) == 2 and len(finals(slack_api.calls)) == 2


async def test_follow_ups_can_be_switched_off(make_slack, slack_api, tmp_path):
    backend = FakeBackend(reply="Noted.")
    h = await make_slack(assistant_with(tmp_path, backend), thread_follow_ups=False)
    await answered_mention(h, slack_api)
    await h.send(event_body(reply("and Z?", ts="1700001000.000009"), event_id="EvOff"))
    await h.bot.drain()
    assert len(backend.calls) == 1


async def test_a_reply_under_a_slash_command_answer_is_a_follow_up(make_slack, slack_api, tmp_path):
    backend = FakeBackend(reply="Noted.")
    h = await make_slack(assistant_with(tmp_path, backend))
    await h.send(command_body("/ask", "What is X?", response_url=slack_api.response_url()))
    await slack_api.wait_for(finals)
    await h.bot.drain()
    answer_ts = slack_api.of("chat.postMessage")[0]  # the answer is a top-level message; its thread
    root = next(m["ts"] for m in slack_api.messages["C1"] if m.get("thread_ts") is None)
    assert answer_ts.args.get("thread_ts") is None
    await h.send(event_body(reply("why?", ts="1800000000.000001", thread_ts=root), event_id="EvUnder"))
    await slack_api.wait_for(lambda calls: len(finals(calls)) == 2)
    assert slack_api.of("chat.postMessage")[-1].args["thread_ts"] == root


# --- command names from config ----------------------------------------------------------------


async def test_renamed_commands_are_the_ones_answered_and_the_help_names_them(
    make_slack, slack_api, tmp_path
):
    backend = FakeBackend(reply="From the renamed command.")
    h = await make_slack(
        assistant_with(tmp_path, backend),
        commands={"ask": "/kb", "help": "/hearth-help", "digest": "/digests"},
    )
    assert (
        await h.send(command_body("/kb", "What is X?", response_url=slack_api.response_url()))
    ).status == 200
    done = await slack_api.wait_for(finals)
    assert "From the renamed command." in done[-1].blocks_text()
    assert "`/kb` What is X?" in slack_api.of("chat.postMessage")[0].blocks_text()
    # The old name is no longer Hearth's: nothing answers it.
    assert (
        await h.send(command_body("/ask", "What is Y?", response_url=slack_api.response_url()))
    ).status != 200
    help_reply = await (await h.send(command_body("/hearth-help", "help"))).json()
    assert "`/kb <question>`" in help_reply["text"] and "`/ask" not in help_reply["text"]
    assert "`/hearth-help help`" in help_reply["text"] and "`/digests list`" in help_reply["text"]
    unknown = await (await h.send(command_body("/hearth-help", "frobnicate"))).json()
    assert "Try `/hearth-help help`" in unknown["text"]
    await h.bot.drain()
    assert len(backend.calls) == 1


async def test_with_renamed_commands_the_empty_question_sentences_name_the_renamed_ones(
    make_slack, slack_api, tmp_path
):
    backend = FakeBackend(reply="never")
    h = await make_slack(assistant_with(tmp_path, backend), commands={"ask": "/kb", "explain": "/why"})
    for command in ("/kb", "/why"):
        await h.send(command_body(command, "  ", response_url=slack_api.response_url()))
    await h.send(event_body(mention("", ts="1700001500.000001"), event_id="EvEmpty"))
    await h.bot.drain()
    empty_ask, empty_code = (c.args["text"] for c in slack_api.of("response_url"))
    assert "`/kb how do I request time off?`" in empty_ask and "/ask" not in empty_ask
    assert "`/why print(1 + 1)`" in empty_code and "/explain" not in empty_code
    [ephemeral] = slack_api.of("chat.postEphemeral")  # an empty @-mention: told privately, the same way
    assert ephemeral.args["text"] == empty_ask and ephemeral.args["user"] == "U1"
    assert backend.calls == [] and not slack_api.of("chat.postMessage")


@pytest.mark.parametrize(
    ("commands", "message"),
    [
        ({"ask": "/data"}, "five different commands"),
        ({"ask": "kb"}, "slack.commands.ask"),
        ({"asks": "/x"}, "asks"),
    ],
    ids=["clash", "no-slash", "typo"],
)
def test_bad_command_names_fail_at_load_naming_the_key(tmp_path, commands, message):
    with pytest.raises((ConfigError, ValueError), match=message):
        make_settings(tmp_path, slack={"commands": commands})


def test_dingtalk_keeps_its_own_command_in_the_empty_question_sentence():
    # DingTalk's commands are fixed (and it has Chinese ones): Slack's renaming never reaches it.
    assert "`/ask how do I" in messages.REFUSALS[Reason.EMPTY]
    renamed = messages.slack_refusals("/kb", "/why")
    assert renamed[Reason.EMPTY] != messages.REFUSALS[Reason.EMPTY]
    assert messages.slack_refusals("/ask", "/explain") == messages.REFUSALS
