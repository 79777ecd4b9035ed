"""One /ask through the Slack bot with the real llama.cpp and the bundled model (short answer)."""

from __future__ import annotations

import pytest

from bot.slack.feedback import FeedbackStore
from core.assistant import Assistant
from tests.fixtures.slack_api import command_body


@pytest.mark.llama
async def test_ask_is_answered_by_the_bundled_local_model(make_slack, slack_api, llama_settings):
    assistant = Assistant.from_settings(llama_settings)
    try:
        h = await make_slack(assistant)
        resp = await h.send(command_body("/ask", "Name a colour.", response_url=slack_api.response_url()))
        assert resp.status == 200
        done = await slack_api.wait_for(
            lambda calls: [
                c
                for c in calls
                if c.method == "chat.update" and any(b.get("type") == "actions" for b in c.blocks())
            ],
            within=180,
        )
        text = done[-1].blocks_text()
        assert "(local)" in text and "Answered by" in text
        buttons = next(b for b in done[-1].blocks() if b["type"] == "actions")
        answer_id = buttons["elements"][0]["value"].split(":", 1)[1]
        record = await FeedbackStore(h.db).answer(answer_id)
        assert record is not None and record.backend == "local" and record.model
    finally:
        await assistant.aclose()
