"""Stream mode: the SDK-based client against the fake DingTalk gateway (HTTP open-connection + WebSocket)."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import pytest

from bot.dingtalk.message import Incoming
from bot.dingtalk.stream import StreamClient
from core.assistant import Assistant
from server.app import create_app
from tests.fixtures.dingtalk_gateway import FakeDingTalk, dingtalk_settings, robot_message, stream_frame


async def test_stream_mode_acknowledges_and_answers(
    tmp_path: Path, dingtalk_gateway: FakeDingTalk, fake_assistant: Assistant, aiohttp_client: Any
) -> None:
    settings = dingtalk_settings(tmp_path, dingtalk_gateway, mode="stream")
    client = await aiohttp_client(create_app(settings, assistant=fake_assistant))
    await dingtalk_gateway.wait_for(lambda: dingtalk_gateway.ws_connections == 1)
    [opened] = dingtalk_gateway.calls_to("/v1.0/gateway/connections/open")
    assert opened.body["clientId"] == "ding-app"
    assert opened.body["subscriptions"] == [{"type": "CALLBACK", "topic": "/v1.0/im/bot/messages/get"}]

    await dingtalk_gateway.push(
        stream_frame(robot_message("问 怎么部署？", gateway=dingtalk_gateway), message_id="f-1")
    )
    [ack] = await dingtalk_gateway.wait_for(lambda: dingtalk_gateway.acks)
    assert ack["code"] == 200 and ack["headers"]["messageId"] == "f-1"
    [reply] = await dingtalk_gateway.wait_for(lambda: dingtalk_gateway.replies("cid-1to1"))
    assert reply.endswith("由 fake-model（本地）回答")

    bad = robot_message("hi", gateway=dingtalk_gateway)
    del bad["senderStaffId"], bad["senderId"]
    await dingtalk_gateway.push(stream_frame(bad, message_id="f-2"))
    await dingtalk_gateway.wait_for(lambda: len(dingtalk_gateway.acks) == 2)
    assert (
        dingtalk_gateway.acks[1]["code"] == 400 and dingtalk_gateway.acks[1]["headers"]["messageId"] == "f-2"
    )

    # The gateway's keep-alive: the SDK's system handler echoes the data back.
    ping = {
        "specVersion": "1.0",
        "type": "SYSTEM",
        "headers": {"topic": "ping", "messageId": "p-1"},
        "data": json.dumps({"opaque": "abc"}),
    }
    await dingtalk_gateway.push(ping)
    await dingtalk_gateway.wait_for(lambda: len(dingtalk_gateway.acks) == 3)
    assert dingtalk_gateway.acks[2]["headers"]["messageId"] == "p-1"
    assert json.loads(dingtalk_gateway.acks[2]["data"]) == {"opaque": "abc"}

    await client.close()
    await dingtalk_gateway.wait_for(lambda: dingtalk_gateway._sockets == [])


async def test_stream_client_reconnects_with_backoff(
    tmp_path: Path, dingtalk_gateway: FakeDingTalk, caplog: pytest.LogCaptureFixture
) -> None:
    settings = dingtalk_settings(tmp_path, dingtalk_gateway, mode="stream")
    delays: list[float] = []

    async def no_wait(seconds: float) -> None:
        delays.append(seconds)
        await asyncio.sleep(0)

    received: list[Incoming] = []
    dingtalk_gateway.fail_opens = 3
    caplog.set_level(logging.INFO, "bot.dingtalk")
    client = StreamClient(
        settings.dingtalk, received.append, backoff_base_s=1.0, backoff_max_s=3.0, sleep=no_wait
    )
    client.start_background()
    try:
        await dingtalk_gateway.wait_for(lambda: dingtalk_gateway.ws_connections == 1)
        # Jittered exponential backoff: 1, 2, 4 (capped at 3) times a factor in [0.5, 1].
        assert len(delays) == 3
        assert 0.5 <= delays[0] <= 1.0 and 1.0 <= delays[1] <= 2.0 and 1.5 <= delays[2] <= 3.0
        assert "answered HTTP 500" in caplog.text

        await dingtalk_gateway.drop_connections()
        await dingtalk_gateway.wait_for(lambda: dingtalk_gateway.ws_connections == 2)
        await client.connected.wait()
        await dingtalk_gateway.push(stream_frame(robot_message("after reconnect"), message_id="f-9"))
        await dingtalk_gateway.wait_for(lambda: received)
        assert received[0].text == "after reconnect"
    finally:
        await client.aclose()
    assert client._runner is not None and client._runner.done()


async def test_wrong_secret_is_logged_without_the_secret(
    tmp_path: Path, dingtalk_gateway: FakeDingTalk, caplog: pytest.LogCaptureFixture
) -> None:
    settings = dingtalk_settings(tmp_path, dingtalk_gateway, mode="stream", client_secret="not-the-secret")
    stopped = asyncio.Event()

    async def stop_after_first(seconds: float) -> None:
        stopped.set()
        await asyncio.sleep(0)

    client = StreamClient(settings.dingtalk, lambda _: None, sleep=stop_after_first)
    client.start_background()
    await stopped.wait()
    await client.aclose()
    assert "answered HTTP 401 — check dingtalk.client_id/client_secret" in caplog.text
    assert "not-the-secret" not in caplog.text


async def test_a_hanging_gateway_times_out_without_blocking_the_loop(
    tmp_path: Path, dingtalk_gateway: FakeDingTalk, caplog: pytest.LogCaptureFixture
) -> None:
    settings = dingtalk_settings(tmp_path, dingtalk_gateway, mode="stream", request_timeout_s=0.3)
    dingtalk_gateway.hang_opens = 1
    ticks = 0

    async def heartbeat() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    async def no_wait(seconds: float) -> None:
        await asyncio.sleep(0)

    beat = asyncio.create_task(heartbeat())
    client = StreamClient(settings.dingtalk, lambda _: None, sleep=no_wait)
    client.start_background()
    try:
        await dingtalk_gateway.wait_for(lambda: dingtalk_gateway.ws_connections == 1)
    finally:
        await client.aclose()
        beat.cancel()
    assert "could not reach" in caplog.text and "timed out" in caplog.text.lower()
    assert ticks >= 10  # the event loop kept running while the blocking call waited in a thread
