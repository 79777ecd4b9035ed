"""Secrets never shown: `hearth config show`, every log line, and error sentences (issue 15)."""

from __future__ import annotations

import json
import logging
import socket
from pathlib import Path

import click
import pytest
import yaml
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from core.errors import BackendUnavailable, HearthError
from core.llm.base import GenOptions, Message, Role, collect
from core.llm.config import RemoteLLMSettings
from core.llm.openai_compat import OpenAICompatBackend
from core.logs import RepeatLimit, install_redaction
from core.redact import redact, redact_data
from server.cli import main
from server.observability import JsonFormatter, error_response

SECRETS = ["s3cretPw", "dt0ken9a8b7c6", "Zm9vYmFyYmF6", "xoxb-1111-2222-abcdefgh", "sk-abcdefghijklmnop1234"]


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("postgresql://hearth:s3cretPw@db:5432/x", "postgresql://hearth:****@db:5432/x"),
        ("http://admin:s3cretPw@qdrant:6333", "http://admin:****@qdrant:6333"),
        (
            "https://oapi.dingtalk.com/robot/send?access_token=dt0ken9a8b7c6",
            "https://oapi.dingtalk.com/robot/send?access_token=****",
        ),
        ("https://x/hook?timestamp=1&sign=Zm9vYmFyYmF6%3D&a=b", "https://x/hook?timestamp=1&sign=****&a=b"),
        ("https://api.example.com/v1?key=s3cretPw", "https://api.example.com/v1?key=****"),
        ("https://api.example.com/v1?token=s3cretPw#x", "https://api.example.com/v1?token=****#x"),
        ("host=db user=h password=s3cretPw dbname=x", "host=db user=h password=**** dbname=x"),
        ("Authorization: Bearer hth_abc_s3cretPws3cretPw", "Authorization: Bearer ****"),
        ('{"api_key": "s3cretPw"}', '{"api_key": "****"}'),
        ("token xoxb-1111-2222-abcdefgh failed", "token xox-**** failed"),
        ("key sk-abcdefghijklmnop1234 rejected", "key sk-**** rejected"),
        ("hth_k1_abcdefghijklmnopqrstuv", "hth_****"),
        ("https://ghp_abcdefghijklmnopqrstuvwx@github.com/team/wiki", "https://****@github.com/team/wiki"),
    ],
)
def test_credentials_in_text_are_masked(text: str, shown: str) -> None:
    assert redact(text) == shown
    assert redact(shown) == shown


@pytest.mark.parametrize(
    "text",
    [
        "Unknown connector 'jira'; available: files, git, http",
        "max_tokens=24 prompt_tokens: 120",
        "https://handbook.example.com/leave.md?page=2",
        "postgresql://postgres@127.0.0.1:5432/test",
        "  store.url: unknown key — did you mean 'path'?",
    ],
)
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert redact(text) == text


@given(st.text(max_size=120))
def test_redaction_is_idempotent(text: str) -> None:
    once = redact(text)
    assert redact(once) == once


def test_config_show_masks_credentials_inside_plain_strings(tmp_path: Path) -> None:
    config = tmp_path / "hearth.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "home": str(tmp_path / "home"),
                "store": {"url": "http://admin:s3cretPw@qdrant:6333"},
                "database": {"url": "postgresql+psycopg://hearth:s3cretPw@db/hearth"},
                "dingtalk": {
                    "client_secret": "Zm9vYmFyYmF6",
                    "webhooks": {
                        "ops": {"url": "https://oapi.dingtalk.com/robot/send?access_token=dt0ken9a8b7c6"}
                    },
                },
                "slack": {"bot_token": "xoxb-1111-2222-abcdefgh"},
                "llm": {"remote": {"base_url": "https://api.example.com/v1?key=sk-abcdefghijklmnop1234"}},
            }
        ),
        encoding="utf-8",
    )
    for args in (["config", "show"], ["config", "show", "--json"]):
        result = CliRunner().invoke(main, ["--config", str(config), *args])
        assert result.exit_code == 0, result.output
        for secret in SECRETS:
            assert secret not in result.output, (args, secret)
        assert "oapi.dingtalk.com/robot/send?access_token=****" in result.output
        assert "admin:****@qdrant:6333" in result.output


def test_redact_data_masks_values_under_secret_keys() -> None:
    data = {"a": {"password": "hunter2", "token": "abc", "name": "x", "items": ["https://u:p4ss@h/"]}}
    assert redact_data(data) == {
        "a": {"password": "**********", "token": "**********", "name": "x", "items": ["https://u:****@h/"]}
    }


def test_every_log_record_is_redacted_whoever_writes_it(caplog: pytest.LogCaptureFixture) -> None:
    install_redaction()
    caplog.set_level(logging.INFO)
    logging.getLogger("slack_sdk.web").info("POST %s", "https://hooks.example.com/x?token=dt0ken9a8b7c6")
    try:
        raise RuntimeError("could not connect to postgresql://hearth:s3cretPw@db/x")
    except RuntimeError:
        logging.getLogger("hearth").exception("state database down")
    text = "\n".join(caplog.text.splitlines())
    formatted = [JsonFormatter().format(r) for r in caplog.records]
    for secret in SECRETS:
        assert secret not in text and all(secret not in line for line in formatted)
    assert "token=****" in text and "hearth:****@db" in formatted[1]


def test_json_log_extras_are_redacted() -> None:
    install_redaction()
    record = logging.getLogger("x").makeRecord(
        "x",
        logging.INFO,
        __file__,
        1,
        "sent",
        None,
        None,
        extra={"target": "https://h/?access_token=dt0ken9a8b7c6"},
    )
    assert "dt0ken9a8b7c6" not in JsonFormatter().format(record)


def test_repeated_errors_are_rate_limited_and_counted() -> None:
    now = [0.0]
    limit = RepeatLimit(burst=3, window_s=60, clock=lambda: now[0])
    written: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            written.append(record.getMessage())

    logger = logging.getLogger("hearth.test.flood")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    handler = Keep()
    handler.addFilter(limit)
    logger.addHandler(handler)
    try:
        for i in range(1000):
            logger.error("client %d sent a bad request", i)
        logger.info("an info line is never limited")
        assert len(written) == 4
        now[0] = 61.0
        logger.error("client %d sent a bad request", 1000)
        assert written[-1] == "client 1000 sent a bad request (997 more like this were not logged)"
        logger.error("another message is its own series")
        assert len(written) == 6
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
        logger.setLevel(logging.NOTSET)


def test_error_bodies_carry_no_credentials() -> None:
    resp = error_response(503, "unavailable", "cannot reach http://u:s3cretPw@h/ (token=dt0ken9a8b7c6)")
    assert resp.body is not None
    body = json.loads(bytes(resp.body))  # type: ignore[arg-type]
    assert "s3cretPw" not in json.dumps(body) and "dt0ken9a8b7c6" not in json.dumps(body)


async def test_remote_api_down_names_the_setting_not_the_url(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/internal-gateway/v1"
    backend = OpenAICompatBackend(
        RemoteLLMSettings(base_url=url, model="m", max_retries=0, connect_timeout_s=2)
    )
    try:
        with pytest.raises(BackendUnavailable) as err:
            await collect(backend.stream([Message(Role.USER, "hi")], GenOptions(max_tokens=2)))
    finally:
        await backend.aclose()
    assert "internal-gateway" not in str(err.value) and str(port) not in str(err.value)
    assert "llm.remote.base_url" in str(err.value)
    assert url in caplog.text  # the operator still learns where it failed


@click.command("boom")
def boom() -> None:
    """A command whose error sentence carries a credential (what a driver's message may hold)."""
    raise HearthError("cannot open postgresql://hearth:s3cretPw@db/x?sslkey=1&password=s3cretPw")


def test_cli_error_sentences_are_redacted(monkeypatch: pytest.MonkeyPatch) -> None:
    import server.cli as cli

    monkeypatch.setitem(cli._COMMANDS, "boom", "tests.unit.test_secrets_masked:boom")
    result = CliRunner().invoke(main, ["boom"])
    assert result.exit_code == 1
    assert "s3cretPw" not in result.output and "hearth:****@db" in result.output
