"""Issue 15, the chat part: DingTalk signature replay, the sessionWebhook host rule, Slack's
timestamp header, and a thread history read that fails with a body that is not JSON.

Through the real parts: `hearth serve`'s app (``create_app``) with the DingTalk callback route and
the fake DingTalk gateway on loopback; the real slack-bolt app and slack_sdk against the fake
Slack Web API on loopback.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from core.assistant import Assistant
from core.llm.fake import FakeBackend
from core.llm.router import Router
from server.app import create_app
from tests.fixtures.core import make_settings
from tests.fixtures.dingtalk_gateway import FakeDingTalk, dingtalk_settings, robot_message
from tests.fixtures.slack_api import BOT_ID, BOT_USER_ID, SIGNING_SECRET, event_body, slack_signature
from tests.integration.test_dingtalk_callback import signed_headers


class Attacker:
    """A loopback server standing in for the attacker's URL: it records whatever reaches it."""

    def __init__(self) -> None:
        self.posts: list[Any] = []

    async def receive(self, request: web.Request) -> web.Response:
        self.posts.append(await request.text())
        return web.json_response({"errcode": 0})


@pytest.fixture
async def attacker(aiohttp_server: Any) -> tuple[Attacker, str]:
    evil = Attacker()
    app = web.Application()
    app.router.add_post("/{tail:.*}", evil.receive)
    server = await aiohttp_server(app)
    return evil, f"http://127.0.0.1:{server.port}/robot/hook"


def engine(settings: Any, backend: FakeBackend) -> Assistant:
    return Assistant(settings, Router(local=backend, remote=None, routing=settings.llm.routing))


async def test_a_captured_signature_replayed_with_a_new_body_is_refused_and_nothing_is_posted(
    tmp_path: Path,
    dingtalk_gateway: FakeDingTalk,
    aiohttp_client: Any,
    attacker: tuple[Attacker, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    evil, evil_url = attacker
    settings = dingtalk_settings(tmp_path, dingtalk_gateway)
    backend = FakeBackend(reply="The salary bands are in the HR handbook.")
    client = await aiohttp_client(create_app(settings, assistant=engine(settings, backend)))
    captured = signed_headers()
    first = robot_message("/ask salary bands?", gateway=dingtalk_gateway, staff_id="hr-1")
    assert (await client.post("/dingtalk/callback", data=json.dumps(first), headers=captured)).status == 200
    await dingtalk_gateway.wait_for(lambda: dingtalk_gateway.replies("cid-1to1"))

    # The red team's replay: the same (timestamp, sign), a body naming another sender and its own webhook.
    forged = robot_message("/ask salary bands?", staff_id="boss", conversation_id="cid-evil")
    forged["sessionWebhook"] = evil_url
    caplog.set_level(logging.WARNING, logger="bot.dingtalk.http")
    resp = await client.post("/dingtalk/callback", data=json.dumps(forged), headers=captured)
    assert resp.status == 401
    assert "already used" in caplog.text
    await client.close()  # waits for every answer in flight: none may be left to post
    assert evil.posts == []
    assert len(backend.calls) == 1
    assert [c.path for c in dingtalk_gateway.calls] == ["/session/cid-1to1"]

    # Another process on the same state database (or this one after a restart) refuses it too.
    again = await aiohttp_client(create_app(settings, assistant=engine(settings, backend)))
    resp = await again.post("/dingtalk/callback", data=json.dumps(forged), headers=captured)
    assert resp.status == 401
    await again.close()
    assert evil.posts == [] and len(backend.calls) == 1


@pytest.mark.parametrize(("age_s", "status"), [(240, 200), (360, 401)], ids=["4-minutes", "6-minutes"])
async def test_the_window_is_five_minutes(
    tmp_path: Path,
    dingtalk_gateway: FakeDingTalk,
    fake_assistant: Assistant,
    aiohttp_client: Any,
    age_s: int,
    status: int,
) -> None:
    client = await aiohttp_client(
        create_app(dingtalk_settings(tmp_path, dingtalk_gateway), assistant=fake_assistant)
    )
    body = robot_message("hi", gateway=dingtalk_gateway)
    headers = signed_headers(age_ms=age_s * 1000)
    assert (await client.post("/dingtalk/callback", data=json.dumps(body), headers=headers)).status == status


async def test_replies_go_only_to_session_webhooks_on_dingtalk_hosts(
    tmp_path: Path,
    dingtalk_gateway: FakeDingTalk,
    aiohttp_client: Any,
    attacker: tuple[Attacker, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    evil, evil_url = attacker
    # The default origins: DingTalk's own API hosts over https — the loopback gateway is not one.
    settings = dingtalk_settings(
        tmp_path,
        dingtalk_gateway,
        robot_code="robot-1",
        session_webhook_origins=["https://oapi.dingtalk.com", "https://api.dingtalk.com"],
    )
    assert [o for o in settings.dingtalk.session_webhook_origins if "127.0.0.1" in o] == []
    backend = FakeBackend(reply="An answer for the conversation.")
    client = await aiohttp_client(create_app(settings, assistant=engine(settings, backend)))
    caplog.set_level(logging.WARNING, logger="bot.dingtalk.reply")
    for n, hook in enumerate([evil_url, "http://oapi.dingtalk.com/robot/sendBySession", "not a url"]):
        body = robot_message("/ask q", conversation_id=f"cid-{n}")
        body["sessionWebhook"] = hook
        headers = signed_headers(age_ms=n)  # a fresh signature each (each is accepted once)
        assert (await client.post("/dingtalk/callback", data=json.dumps(body), headers=headers)).status == 200
    await client.close()
    assert evil.posts == []
    assert not [c for c in dingtalk_gateway.calls if c.path.startswith("/session/")]
    # The answers still reach their conversations, as the robot through the OpenAPI.
    sent = dingtalk_gateway.calls_to("/v1.0/robot/oToMessages/batchSend")
    assert len(sent) == 3 and all("An answer for the conversation." in c.body["msgParam"] for c in sent)
    assert caplog.text.count("outside dingtalk.session_webhook_origins") == 3
    assert "http://oapi.dingtalk.com" in caplog.text  # plain http to DingTalk's host is refused too


def test_the_origin_rule(tmp_path: Path) -> None:
    from bot.dingtalk.reply import Replier

    cfg = make_settings(tmp_path).dingtalk  # the defaults: DingTalk's API hosts
    replier = Replier(None, cfg)  # type: ignore[arg-type]  # the rule needs no session
    assert replier.allowed("https://oapi.dingtalk.com/robot/sendBySession?session=abc")
    assert replier.allowed("https://OAPI.dingtalk.com:443/robot/sendBySession")
    assert replier.allowed("https://api.dingtalk.com/v1.0/x")
    for bad in (
        "http://oapi.dingtalk.com/robot/sendBySession",
        "https://oapi.dingtalk.com.evil.example/robot",
        "https://evil.example/?https://oapi.dingtalk.com",
        "https://user@oapi.dingtalk.com/robot",
        "https://oapi.dingtalk.com:8443/robot",
        "https://[::1/robot",
        "",
    ):
        assert not replier.allowed(bad), bad


# --- Slack ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("stamp", ["soon", "12.5", "-1", "1e9", "9" * 5000, ""])
async def test_a_malformed_slack_timestamp_header_gets_401(make_slack, slack_api, stamp: str) -> None:
    h = await make_slack()
    body = json.dumps({"type": "url_verification", "challenge": "c", "token": "x"})
    headers = {
        "X-Slack-Request-Timestamp": stamp,
        "X-Slack-Signature": slack_signature(SIGNING_SECRET, stamp, body),
        "Content-Type": "application/json",
    }
    assert (await h.client.post("/slack/events", data=body, headers=headers)).status == 401
    garbage = await h.client.post("/slack/events", data="{not json", headers=headers)
    assert garbage.status == 401
    # A well-formed one still passes.
    assert (await h.send(body)).status == 200


@pytest.mark.parametrize(
    ("body", "content_type"),
    [("<html><h1>502 Bad Gateway</h1></html>", "text/html"), ("<html>oops</html>", "application/json")],
    ids=["html-error-page", "not-json-labelled-json"],
)
async def test_a_thread_history_read_that_is_not_json_answers_without_history(
    make_slack, slack_api, tmp_path, caplog, body: str, content_type: str
) -> None:
    from tests.integration.test_slack_bot import assistant_with, finals, mention

    backend = FakeBackend(reply="Answered anyway.")
    h = await make_slack(assistant_with(tmp_path, backend))
    root = "1700000000.000001"
    slack_api.add_message("C1", root, user="U1", text=f"<@{BOT_USER_ID}> What is X?", thread_ts=root)
    slack_api.add_message(
        "C1", "1700000000.000002", user=BOT_USER_ID, bot_id=BOT_ID, text="X.", thread_ts=root
    )
    slack_api.fail_raw("conversations.replies", body, status=502, content_type=content_type)
    caplog.set_level(logging.WARNING, logger="bot.slack.history")
    event = event_body(mention("And Y?", ts="1700000000.000003", thread_ts=root), event_id="EvRaw")
    assert (await h.send(event)).status == 200
    done = await slack_api.wait_for(finals)
    assert "Answered anyway." in done[-1].blocks_text()
    assert "conversations.replies failed" in caplog.text
    prompt = "\n".join(m.content for m in backend.calls[0].messages)
    assert "And Y?" in prompt and "What is X?" not in prompt
