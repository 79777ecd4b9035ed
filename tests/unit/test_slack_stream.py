"""StreamingReply's throttle on an injected clock, through the real slack_sdk and the fake Slack API."""

from __future__ import annotations

from slack_sdk.web.async_client import AsyncWebClient

from bot.slack.stream import StreamingReply
from core.contracts import Answer
from core.llm.base import Usage
from tests.fixtures.slack_api import BOT_TOKEN, FakeSlackApi


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_updates_go_out_at_most_once_per_interval(slack_api: FakeSlackApi) -> None:
    clock = Clock()
    client = AsyncWebClient(token=BOT_TOKEN, base_url=slack_api.api_url)
    reply = StreamingReply(client, "C1", interval_s=0.2, clock=clock)
    await reply.start()
    sent_at: list[float] = []
    for k in range(1, 41):  # a token every 30 ms of model time, 1.2 s in all
        clock.now = k * 0.03
        before = len(slack_api.of("chat.update"))
        await reply.feed(f" w{k}")
        if len(slack_api.of("chat.update")) > before:
            sent_at.append(clock.now)
    # Due at 0.21, 0.42, 0.63, 0.84 and 1.05 s: one per 0.2 s interval, none closer.
    assert sent_at == [0.03 * k for k in (7, 14, 21, 28, 35)]
    partial = slack_api.of("chat.update")[-1].blocks_text()
    assert partial.endswith("…") and "w35" in partial and "w36" not in partial
    clock.now = 10.0  # the final text goes out whatever the throttle says
    await reply.finish(Answer("all forty words", [], "local", "fake-model", Usage(5, 40)))
    assert len(slack_api.of("chat.update")) == 6
    assert "all forty words" in slack_api.of("chat.update")[-1].blocks_text()
