"""`hearth serve` with the DingTalk bot (HTTP callback mode) as a real subprocess: a message whose
process was SIGKILLed mid-answer is answered once by the restarted process (DingTalk never
redelivers a callback it got a 200 for), and a redelivery of it is not answered again."""

from __future__ import annotations

import asyncio
import json
import signal
from typing import Any

import aiohttp

from tests.fixtures.dingtalk_gateway import APP_SECRET, FakeDingTalk, robot_message
from tests.fixtures.openai_server import FakeOpenAI
from tests.integration.test_dingtalk_callback import signed_headers


def config(openai_server: FakeOpenAI, gateway: FakeDingTalk) -> dict[str, Any]:
    return {
        "llm": {
            "local": {"enabled": False},
            "remote": {"base_url": openai_server.base_url, "api_key": "sk-test", "max_retries": 0},
        },
        "dingtalk": {
            "enabled": True,
            "mode": "http",
            "client_id": "ding-app",
            "client_secret": APP_SECRET,
            "api_base_url": gateway.base_url,
            "session_webhook_origins": [gateway.base_url],
            "request_timeout_s": 5,
        },
        "server": {"shutdown_timeout_s": 5},
    }


async def deliver(url: str, body: dict[str, Any], *, age_ms: int = 0) -> int:
    async with aiohttp.ClientSession() as http:
        headers = signed_headers(age_ms=age_ms)
        async with http.post(url + "/dingtalk/callback", data=json.dumps(body), headers=headers) as resp:
            return resp.status


async def test_a_message_whose_process_was_killed_is_answered_once_after_the_restart(
    hearth_serve, openai_server: FakeOpenAI, dingtalk_gateway: FakeDingTalk
) -> None:
    openai_server.plan = ["hang"]  # the first answer never finishes: the process dies while it waits
    server = await hearth_serve(config(openai_server, dingtalk_gateway))
    body = robot_message("/ask What is Hearth?", gateway=dingtalk_gateway, msg_id="msg-killed")
    assert await deliver(server.url, body) == 200
    for _ in range(600):  # claimed, noted, the model asked (and hanging)
        if openai_server.requests:
            break
        await asyncio.sleep(0.05)
    assert openai_server.requests
    assert await server.stop(signal.SIGKILL) == -signal.SIGKILL
    assert not [r for r in dingtalk_gateway.replies("cid-1to1") if openai_server.reply in r]

    again = await hearth_serve(config(openai_server, dingtalk_gateway))

    def answers() -> list[str]:
        return [r for r in dingtalk_gateway.replies("cid-1to1") if openai_server.reply in r]

    [answer] = await dingtalk_gateway.wait_for(answers, within_s=60)
    assert answer.endswith("(remote)")
    # A redelivery of the same message (a fresh signature) is a duplicate; a new question is answered.
    assert await deliver(again.url, body, age_ms=1) == 200
    other = robot_message("/ask next?", gateway=dingtalk_gateway, msg_id="msg-next")
    assert await deliver(again.url, other, age_ms=2) == 200
    await dingtalk_gateway.wait_for(lambda: len(answers()) == 2, within_s=60)
    assert await again.stop() == 0
    assert len(answers()) == 2
    assert "left unanswered by a process that stopped" in "\n".join(again.log_lines)
