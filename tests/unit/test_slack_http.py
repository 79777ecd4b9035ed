"""Payload shape checks and the mount's settings checks."""

from __future__ import annotations

import pytest
from aiohttp import web

from bot.slack.http import mount, payload_problem
from core.errors import ConfigError
from tests.fixtures.core import make_settings


@pytest.mark.parametrize(
    "body",
    [
        {"command": "/ask", "user_id": "U1", "channel_id": "C1", "text": ""},
        {"type": "event_callback", "event_id": "Ev1", "event": {"type": "app_mention"}},
        {"type": "block_actions", "user": {"id": "U1"}, "actions": []},
        {"type": "url_verification", "challenge": "x"},
    ],
)
def test_shapes_slack_sends_pass(body):
    assert payload_problem(body) is None


@pytest.mark.parametrize(
    "body",
    [
        {},
        [],
        {"hello": "world"},
        {"command": "/ask", "channel_id": "C1"},
        {"type": "event_callback", "event": {"type": "app_mention"}},
        {"type": "event_callback", "event_id": "E"},
        {"type": "block_actions", "user": "U1"},
    ],
)
def test_malformed_shapes_are_named(body):
    assert payload_problem(body)


def test_mount_is_a_no_op_when_disabled(tmp_path):
    app = web.Application()
    mount(app, make_settings(tmp_path))
    assert not list(app.router.routes()) and not app.cleanup_ctx


def test_mount_names_the_missing_key(tmp_path):
    with pytest.raises(ConfigError, match="slack.signing_secret"):
        mount(web.Application(), make_settings(tmp_path, slack={"enabled": True, "bot_token": "xoxb-1"}))
    with pytest.raises(ConfigError, match="slack.app_token"):
        mount(
            web.Application(),
            make_settings(tmp_path, slack={"enabled": True, "mode": "socket", "bot_token": "x"}),
        )
    with pytest.raises(ConfigError, match="slack.bot_token"):
        mount(web.Application(), make_settings(tmp_path, slack={"enabled": True, "signing_secret": "s"}))
