"""The real slack-bolt app and slack_sdk client against the fake Slack Web API on loopback."""

from __future__ import annotations

import time

from tests.fixtures.slack_api import command_body


async def test_ask_acknowledges_then_streams_answer(make_slack, slack_api):
    h = await make_slack()
    resp = await h.send(command_body("/ask", "What is Hearth?", response_url=slack_api.response_url()))
    assert resp.status == 200
    final = await slack_api.wait_for(
        lambda calls: [c for c in calls if c.method == "chat.update" and "Answered by" in c.blocks_text()])
    print(slack_api.calls)
    assert "Hearth fake answer" in final[-1].blocks_text()
