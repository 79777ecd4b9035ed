"""The fake Slack Web API keeps Slack's contract where the bot depends on it (real slack_sdk client)."""

from __future__ import annotations

import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from tests.fixtures.slack_api import BOT_TOKEN, FakeSlackApi


def client(api: FakeSlackApi, token: str | None = BOT_TOKEN) -> AsyncWebClient:
    return AsyncWebClient(token=token, base_url=api.api_url)


def thread(api: FakeSlackApi, n: int) -> str:
    root = "1700000000.000001"
    for i in range(1, n + 1):
        api.add_message("C1", f"1700000000.{i:06d}", user="U1", text=f"m{i}", thread_ts=root)
    return root


async def test_replies_page_oldest_first_with_limit_and_cursor(slack_api: FakeSlackApi) -> None:
    root = thread(slack_api, 25)
    web = client(slack_api)
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        resp = await web.conversations_replies(channel="C1", ts=root, limit=10, cursor=cursor)
        pages += 1
        seen += [m["text"] for m in resp["messages"]]
        assert len(resp["messages"]) <= 10
        cursor = resp["response_metadata"]["next_cursor"]
        if not resp["has_more"]:
            assert cursor == ""
            break
    assert pages == 3 and seen == [f"m{i}" for i in range(1, 26)]


async def test_replies_and_history_honour_latest_and_oldest(slack_api: FakeSlackApi) -> None:
    root = thread(slack_api, 5)
    web = client(slack_api)
    resp = await web.conversations_replies(channel="C1", ts=root, latest="1700000000.000004")
    assert [m["text"] for m in resp["messages"]] == ["m1", "m2", "m3"]
    resp = await web.conversations_replies(channel="C1", ts=root, latest="1700000000.000004", inclusive=True)
    assert [m["text"] for m in resp["messages"]] == ["m1", "m2", "m3", "m4"]
    for i in range(1, 6):
        slack_api.add_message("C2", f"1700000100.{i:06d}", user="U1", text=f"h{i}")
    resp = await web.conversations_history(channel="C2", oldest="1700000100.000002", limit=2)
    assert [m["text"] for m in resp["messages"]] == ["h5", "h4"] and resp["has_more"]


@pytest.mark.parametrize(("token", "error"), [(None, "not_authed"), ("xoxb-nobody-knows", "invalid_auth")])
async def test_unknown_or_missing_tokens_are_refused(
    slack_api: FakeSlackApi, token: str | None, error: str
) -> None:
    with pytest.raises(SlackApiError) as raised:
        await client(slack_api, token).auth_test()
    assert raised.value.response["error"] == error


async def test_a_revoked_token_stops_working(slack_api: FakeSlackApi) -> None:
    web = client(slack_api)
    assert (await web.auth_test())["ok"]
    slack_api.revoke(BOT_TOKEN)
    with pytest.raises(SlackApiError) as raised:
        await web.chat_postMessage(channel="C1", text="hello")
    assert raised.value.response["error"] == "token_revoked"
    assert "C1" not in slack_api.messages


async def test_metadata_is_listed_only_when_asked_for(slack_api: FakeSlackApi) -> None:
    web = client(slack_api)
    meta = {"event_type": "hearth_answer", "event_payload": {"question_id": "q1"}}
    posted = await web.chat_postMessage(channel="C1", text="Thinking…", metadata=meta)
    plain = await web.conversations_history(channel="C1")
    full = await web.conversations_history(channel="C1", include_all_metadata=True)
    assert "metadata" not in plain["messages"][0] and full["messages"][0]["metadata"] == meta
    replies = await web.conversations_replies(channel="C1", ts=posted["ts"], include_all_metadata=True)
    assert replies["messages"][0]["metadata"] == meta


async def test_a_held_call_takes_effect_but_its_answer_waits_for_release(slack_api: FakeSlackApi) -> None:
    import asyncio
    import time

    slack_api.realtime = True
    slack_api.hold("chat.postMessage")
    before = time.time()
    sent = asyncio.ensure_future(client(slack_api).chat_postMessage(channel="C1", text="Thinking…"))
    await slack_api.wait_for(lambda calls: [c for c in calls if c.method == "chat.postMessage:held"])
    [msg] = slack_api.messages["C1"]  # Slack has the message; the caller has no answer yet
    assert not sent.done() and before <= float(msg["ts"]) <= time.time()
    slack_api.release()
    assert (await sent)["ts"] == msg["ts"]
    second = await client(slack_api).chat_postMessage(channel="C1", text="again")  # held only once
    assert float(second["ts"]) > float(msg["ts"])
