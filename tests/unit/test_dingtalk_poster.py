"""Proactive posts: signed webhooks, the 20-per-minute limit (queue and merge), errcode 130101 retries."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from bot.dingtalk.openapi import DingTalkAPIError
from bot.dingtalk.poster import MAX_MESSAGE_CHARS, DingTalkPoster
from core.errors import ConfigError
from tests.fixtures.dingtalk_gateway import FakeDingTalk, dingtalk_settings


class FakeClock:
    """A monotonic clock that only moves when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


def texts(gateway: FakeDingTalk) -> list[str]:
    return [c.body["markdown"]["text"] for c in gateway.calls_to("/robot/send")]


async def test_post_is_signed_and_accepted(tmp_path: Path, dingtalk_gateway: FakeDingTalk) -> None:
    poster = DingTalkPoster(dingtalk_settings(tmp_path, dingtalk_gateway).dingtalk)
    try:
        assert await poster.post("team", "## Weekly digest\n\n- three docs changed") == ""
    finally:
        await poster.aclose()
    [call] = dingtalk_gateway.calls_to("/robot/send")
    assert {"access_token", "timestamp", "sign"} <= set(call.query)
    assert call.body == {
        "msgtype": "markdown",
        "markdown": {"title": "Weekly digest", "text": "## Weekly digest\n\n- three docs changed"},
    }
    assert poster.surface == "dingtalk"


async def test_unknown_destination_names_the_known_ones(
    tmp_path: Path, dingtalk_gateway: FakeDingTalk
) -> None:
    poster = DingTalkPoster(dingtalk_settings(tmp_path, dingtalk_gateway).dingtalk)
    with pytest.raises(ConfigError, match="Unknown DingTalk webhook 'ops'; available: team"):
        await poster.post("ops", "hello")
    await poster.aclose()


async def test_wrong_secret_is_a_clear_error(tmp_path: Path, dingtalk_gateway: FakeDingTalk) -> None:
    settings = dingtalk_settings(
        tmp_path,
        dingtalk_gateway,
        webhooks={"team": {"url": dingtalk_gateway.webhook_url(), "secret": "SECwrong"}},
    )
    poster = DingTalkPoster(settings.dingtalk)
    with pytest.raises(DingTalkAPIError, match=r"errcode 310000 .*dingtalk.webhooks.team"):
        await poster.post("team", "hello")
    await poster.aclose()


async def test_burst_is_queued_and_merged_not_dropped(tmp_path: Path, dingtalk_gateway: FakeDingTalk) -> None:
    clock = FakeClock()
    poster = DingTalkPoster(
        dingtalk_settings(tmp_path, dingtalk_gateway).dingtalk, clock=clock, sleep=clock.sleep
    )
    try:
        results = await asyncio.gather(*(poster.post("team", f"message {i}") for i in range(25)))
        assert results == [""] * 25
        sent = texts(dingtalk_gateway)
        # 19 posts on their own, then the last slot of the minute carries the 6 that were waiting.
        assert len(sent) == 20
        assert sent[:19] == [f"message {i}" for i in range(19)]
        assert [f"message {i}" in sent[19] for i in range(19, 25)] == [True] * 6
        assert clock.sleeps == []
        # The minute is used up: the next post waits for the window (on the fake clock) instead of failing.
        await poster.post("team", "late")
        assert texts(dingtalk_gateway)[-1] == "late"
        assert 59.0 <= sum(clock.sleeps) <= 61.0
    finally:
        await poster.aclose()


async def test_errcode_130101_backs_off_and_retries(
    tmp_path: Path, dingtalk_gateway: FakeDingTalk, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    dingtalk_gateway.rate_limit_next = 3
    poster = DingTalkPoster(
        dingtalk_settings(tmp_path, dingtalk_gateway).dingtalk, clock=clock, sleep=clock.sleep
    )
    caplog.set_level(logging.WARNING, "bot.dingtalk")
    try:
        await asyncio.gather(poster.post("team", "first"), poster.post("team", "second"))
    finally:
        await poster.aclose()
    assert clock.sleeps == [5.0, 10.0, 20.0]
    attempts = texts(dingtalk_gateway)
    assert len(attempts) == 4
    assert "first" in attempts[-1] and "second" in attempts[-1]  # merged after the back-off
    assert "130101" in caplog.text and "retrying in 5s" in caplog.text


async def test_unreachable_webhook_gives_up_after_retries(
    tmp_path: Path, dingtalk_gateway: FakeDingTalk
) -> None:
    clock = FakeClock()
    settings = dingtalk_settings(
        tmp_path, dingtalk_gateway, webhooks={"team": {"url": "http://127.0.0.1:9/robot/send?access_token=x"}}
    )
    poster = DingTalkPoster(settings.dingtalk, clock=clock, sleep=clock.sleep, max_network_attempts=3)
    with pytest.raises(DingTalkAPIError, match="could not reach DingTalk"):
        await poster.post("team", "hello")
    assert len(clock.sleeps) == 2
    await poster.aclose()


async def test_a_long_digest_is_split_not_cut(tmp_path: Path, dingtalk_gateway: FakeDingTalk) -> None:
    poster = DingTalkPoster(dingtalk_settings(tmp_path, dingtalk_gateway).dingtalk)
    paragraphs = [f"## Part {i}\n\n" + ("变更内容 " * 300) for i in range(6)]
    try:
        await poster.post("team", "\n\n".join(paragraphs))
    finally:
        await poster.aclose()
    sent = texts(dingtalk_gateway)
    assert len(sent) > 1 and all(len(t) <= MAX_MESSAGE_CHARS for t in sent)
    assert "".join(sent).replace("\n", "").replace(" ", "") == "".join(paragraphs).replace("\n", "").replace(
        " ", ""
    )
