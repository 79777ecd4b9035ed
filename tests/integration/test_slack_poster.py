"""The Slack poster (digests) and the /digest command against the fake Slack Web API."""

from __future__ import annotations

from bot import messages
from bot.slack.poster import SlackPoster
from core.digests import messages as digest_messages
from tests.fixtures.core import make_settings
from tests.fixtures.slack_api import command_body, slack_section


async def test_poster_posts_safe_split_messages(tmp_path, slack_api):
    settings = make_settings(tmp_path, slack=slack_section(slack_api))
    poster = SlackPoster.from_settings(settings)
    text = "# Weekly\n**3 docs changed** — see https://evil.example/x\n\n" + "\n\n".join(
        f"Item {i}: " + "detail " * 40 for i in range(30)
    )
    ts = await poster.post("#eng", text)
    posts = slack_api.of("chat.postMessage")
    assert ts == slack_api.messages["#eng"][0]["ts"] and len(posts) >= 3
    assert all(p.args["channel"] == "#eng" for p in posts)
    assert all(p.args.get("thread_ts") == ts for p in posts[1:])
    first = posts[0].blocks_text()
    assert first.startswith("*Weekly*\n*3 docs changed*") and "<https://evil" not in first
    await poster.aclose()


async def test_poster_retries_after_429(tmp_path, slack_api):
    poster = SlackPoster.from_settings(make_settings(tmp_path, slack=slack_section(slack_api)))
    slack_api.rate_limit("chat.postMessage", times=1, retry_after=1)
    assert await poster.post("C1", "hello")
    assert [c.status for c in slack_api.calls if c.method == "chat.postMessage"] == [429, 200]


async def test_digest_command_without_and_with_a_service(make_slack, slack_api):
    h = await make_slack()
    await h.send(command_body("/digest", "list", response_url=slack_api.response_url()))
    await h.bot.drain()
    assert slack_api.of("response_url")[-1].args["text"] == messages.SLACK_DIGESTS_UNAVAILABLE

    h.bot.digests = lambda: object()  # any service: an empty command only prints the usage
    await h.send(command_body("/digest", "", response_url=slack_api.response_url()))
    await h.bot.drain()
    reply = slack_api.of("response_url")[-1].args
    assert reply["response_type"] == "ephemeral" and "/digest create" in reply["text"]
    assert digest_messages.CMD_USAGE.split("`")[0] in reply["text"]
