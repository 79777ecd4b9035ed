"""The Slack bot inside `hearth serve`'s app (create_app): HTTP Events API and Socket Mode, end to end."""

from __future__ import annotations

import asyncio
import json

from server.app import create_app
from tests.fixtures.core import make_settings
from tests.fixtures.slack_api import (
    SIGNING_SECRET,
    command_body,
    event_body,
    signed_headers,
    slack_section,
)


def finals(calls):
    return [
        c
        for c in calls
        if c.method in ("chat.update", "chat.postMessage")
        and any(b.get("type") == "actions" for b in c.blocks())
    ]


async def test_slash_command_through_hearth_serve(
    tmp_path, slack_api, aiohttp_client, fake_assistant, fake_backend
):
    settings = make_settings(tmp_path, slack=slack_section(slack_api))
    client = await aiohttp_client(create_app(settings, assistant=fake_assistant))

    body = json.dumps({"type": "url_verification", "challenge": "c-42", "token": "x"})
    resp = await client.post("/slack/events", data=body, headers=signed_headers(SIGNING_SECRET, body))
    assert resp.status == 200 and "c-42" in await resp.text()

    body = command_body("/ask", "What is Hearth?", response_url=slack_api.response_url())
    fake_backend.hold = asyncio.Event()  # no token until the acknowledgement is in
    post = client.post("/slack/events", data=body, headers=signed_headers(SIGNING_SECRET, body))
    resp = await asyncio.wait_for(post, 10)  # an ack that waited on the model would never come
    assert resp.status == 200 and not finals(slack_api.calls)
    fake_backend.hold.set()
    done = await slack_api.wait_for(finals)
    text = done[-1].blocks_text()
    assert "Hearth fake answer" in text and "Answered by fake-model (local)" in text

    forged = await client.post("/slack/events", data=body, headers=signed_headers("wrong", body))
    assert forged.status == 401
    assert (await client.get("/healthz")).status == 200


async def test_disabled_slack_mounts_nothing(tmp_path, aiohttp_client, fake_assistant):
    client = await aiohttp_client(create_app(make_settings(tmp_path), assistant=fake_assistant))
    assert (await client.post("/slack/events", data="{}")).status == 404


async def test_socket_mode_through_hearth_serve(tmp_path, slack_api, aiohttp_client, fake_assistant):
    command = dict(x.split("=", 1) for x in command_body("/ask", "via socket").split("&"))
    command.update({"command": "/ask", "text": "via socket", "response_url": slack_api.response_url()})
    slack_api.socket_envelopes.append(
        {
            "envelope_id": "env-1",
            "type": "slash_commands",
            "accepts_response_payload": True,
            "payload": command,
        }
    )
    event = {
        "type": "app_mention",
        "user": "U3",
        "text": "<@UBOT> and events?",
        "ts": "1700000500.000001",
        "channel": "C5",
        "event_ts": "1700000500.000001",
    }
    slack_api.socket_envelopes.append(
        {
            "envelope_id": "env-2",
            "type": "events_api",
            "accepts_response_payload": False,
            "retry_attempt": 0,
            "payload": json.loads(event_body(event, event_id="EvS1")),
        }
    )
    settings = make_settings(
        tmp_path, slack=slack_section(slack_api, mode="socket", app_token="xapp-test", signing_secret=None)
    )
    client = await aiohttp_client(create_app(settings, assistant=fake_assistant))
    done = await slack_api.wait_for(lambda calls: len(finals(calls)) >= 2 and calls)
    acks = {a.get("envelope_id") for a in slack_api.socket_acks}
    assert {"env-1", "env-2"} <= acks
    channels = {c.args["channel"] for c in finals(done)}
    assert channels == {"C1", "C5"}
    assert (await client.post("/slack/events", data="{}")).status == 404  # no HTTP route in socket mode
