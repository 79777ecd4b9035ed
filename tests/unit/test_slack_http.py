"""Payload shape checks and the mount's settings checks."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from aiohttp import web

from bot.slack.http import mount, payload_problem
from core.config import SlackCommands
from core.errors import ConfigError
from tests.fixtures.core import make_settings

ROOT = Path(__file__).resolve().parents[2]


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
    ("body", "named"),
    [
        ({}, "empty or non-object payload"),
        ([], "empty or non-object payload"),
        ({"hello": "world"}, "unrecognised payload type"),
        ({"command": "/ask", "channel_id": "C1"}, "slash command without user_id"),
        ({"type": "event_callback", "event": {"type": "app_mention"}}, "event_callback without an event_id"),
        ({"type": "event_callback", "event_id": "E"}, "event_callback without an event"),
        ({"type": "block_actions", "user": "U1"}, "block_actions without user or actions"),
    ],
)
def test_malformed_shapes_are_named(body, named):
    # The problem names what is missing (it is logged, so an operator can tell payloads apart).
    assert payload_problem(body) == named


def services(settings):
    """What `hearth serve` hands a mount (nothing here is opened: mount only reads the settings)."""
    from core.db import Database
    from core.intake import Intake
    from core.services import Services

    db = Database(settings.database_url)
    return Services(settings, db, Intake(settings, lambda: None, db=db), lambda: None, lambda: None)


def test_mount_is_a_no_op_when_disabled(tmp_path):
    app = web.Application()
    mount(app, services(make_settings(tmp_path)))
    assert not list(app.router.routes()) and not app.cleanup_ctx


def test_mount_names_the_missing_key(tmp_path):
    with pytest.raises(ConfigError, match="slack.signing_secret"):
        mount(
            web.Application(),
            services(make_settings(tmp_path, slack={"enabled": True, "bot_token": "xoxb-1"})),
        )
    with pytest.raises(ConfigError, match="slack.app_token"):
        mount(
            web.Application(),
            services(make_settings(tmp_path, slack={"enabled": True, "mode": "socket", "bot_token": "x"})),
        )
    with pytest.raises(ConfigError, match="slack.bot_token"):
        mount(
            web.Application(),
            services(make_settings(tmp_path, slack={"enabled": True, "signing_secret": "s"})),
        )


def test_manifest_declares_what_the_bot_handles():
    manifest = yaml.safe_load((ROOT / "deploy" / "slack-manifest.yaml").read_text(encoding="utf-8"))
    commands = manifest["features"]["slash_commands"]
    names = SlackCommands()  # the bot's defaults: what a fresh hearth.yaml listens for
    assert [c["command"] for c in commands] == [
        names.ask,
        names.data,
        names.explain,
        names.help,
        names.digest,
    ]
    settings = manifest["settings"]
    urls = [c["url"] for c in commands] + [
        settings["event_subscriptions"]["request_url"],
        settings["interactivity"]["request_url"],
    ]
    assert all(u.endswith("/slack/events") for u in urls)
    # Mentions, DMs, and replies in channel threads Hearth answered in (public and private channels).
    assert set(settings["event_subscriptions"]["bot_events"]) == {
        "app_mention",
        "message.im",
        "message.channels",
        "message.groups",
    }
    assert settings["interactivity"]["is_enabled"] is True
    scopes = set(manifest["oauth_config"]["scopes"]["bot"])
    assert {
        "app_mentions:read",
        "chat:write",
        "commands",
        "im:history",
        "channels:history",
        "usergroups:read",
    } <= scopes
    assert len(manifest["display_information"]["name"]) <= 35


def test_readme_names_the_commands_the_manifest_registers_and_how_to_rename_them():
    manifest = yaml.safe_load((ROOT / "deploy" / "slack-manifest.yaml").read_text(encoding="utf-8"))
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Slack\n", 1)[1].split("\n## ", 1)[0]
    for command in manifest["features"]["slash_commands"]:
        assert f"`{command['command']}" in section, command["command"]
    assert "slack.commands" in section and "commands:" in section
    assert "without a mention" in section or "no need to mention" in section
