"""HTTP callback mode inside the real `hearth serve` app: real signatures, the fake DingTalk for replies."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from core.assistant import Assistant
from core.errors import ConfigError
from core.llm.fake import FakeBackend
from core.llm.router import Router
from server.app import create_app
from tests.fixtures.dingtalk_gateway import APP_SECRET, FakeDingTalk, dingtalk_settings, robot_message


def signed_headers(secret: str = APP_SECRET, *, age_ms: int = 0) -> dict[str, str]:
    timestamp = str(int(time.time() * 1000) - age_ms)
    mac = hmac.new(secret.encode(), f"{timestamp}\n{secret}".encode(), hashlib.sha256)
    return {
        "timestamp": timestamp,
        "sign": base64.b64encode(mac.digest()).decode(),
        "Content-Type": "application/json",
    }


async def client_for(aiohttp_client: Any, settings: Any, assistant: Assistant) -> Any:
    return await aiohttp_client(create_app(settings, assistant=assistant))


async def test_signed_callback_is_acknowledged_then_answered(
    tmp_path: Path, dingtalk_gateway: FakeDingTalk, fake_assistant: Assistant, aiohttp_client: Any
) -> None:
    client = await client_for(aiohttp_client, dingtalk_settings(tmp_path, dingtalk_gateway), fake_assistant)
    body = robot_message("How do I deploy?", gateway=dingtalk_gateway)
    resp = await client.post("/dingtalk/callback", data=json.dumps(body), headers=signed_headers())
    assert resp.status == 200
    [reply] = await dingtalk_gateway.wait_for(lambda: dingtalk_gateway.replies("cid-1to1"))
    assert reply.endswith("Answered by fake-model (local)")


@pytest.mark.parametrize(
    ("make_headers", "reason"),
    [  # made when the test runs: a timestamp taken at collection is minutes old in a long suite
        (lambda: signed_headers("forged-secret"), "signature does not match"),
        (lambda: signed_headers(age_ms=2 * 3_600_000), "away from now"),
        (lambda: {"Content-Type": "application/json"}, "missing 'timestamp' or 'sign'"),
    ],
    ids=["forged", "two-hours-old", "unsigned"],
)
async def test_bad_signatures_get_401_and_a_log_line(
    tmp_path: Path,
    dingtalk_gateway: FakeDingTalk,
    fake_assistant: Assistant,
    fake_backend: FakeBackend,
    aiohttp_client: Any,
    caplog: pytest.LogCaptureFixture,
    make_headers: Callable[[], dict[str, str]],
    reason: str,
) -> None:
    client = await client_for(aiohttp_client, dingtalk_settings(tmp_path, dingtalk_gateway), fake_assistant)
    body = robot_message("How do I deploy?", gateway=dingtalk_gateway)
    resp = await client.post("/dingtalk/callback", data=json.dumps(body), headers=make_headers())
    assert resp.status == 401
    assert "DingTalk callback from" in caplog.text and reason in caplog.text
    assert APP_SECRET not in caplog.text
    assert fake_backend.calls == [] and dingtalk_gateway.calls == []


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("{not json", "The request body is not valid JSON"),
        # Signed, so past the signature check: json.loads raised RecursionError here (a 500).
        ('{"msgId": ' + "[" * 100_000 + "]" * 100_000 + "}", "nested too deeply"),
        ('{"msgId": ' + "9" * 5000 + "}", "too long"),
        (json.dumps({k: v for k, v in robot_message("hi").items() if k != "msgId"}), "lacks msgId"),
        (
            json.dumps({k: v for k, v in robot_message("hi").items() if k != "conversationId"}),
            "conversationId",
        ),
        (json.dumps([1, 2]), "must be a JSON object"),
    ],
    ids=["not-json", "deep-nesting", "huge-number", "no-msgId", "no-conversationId", "array"],
)
async def test_malformed_payloads_get_400(
    tmp_path: Path,
    dingtalk_gateway: FakeDingTalk,
    fake_assistant: Assistant,
    aiohttp_client: Any,
    body: str,
    message: str,
) -> None:
    client = await client_for(aiohttp_client, dingtalk_settings(tmp_path, dingtalk_gateway), fake_assistant)
    resp = await client.post("/dingtalk/callback", data=body, headers=signed_headers())
    assert resp.status == 400
    assert message in (await resp.json())["error"]


async def test_shutdown_lets_a_running_answer_finish(
    tmp_path: Path, dingtalk_gateway: FakeDingTalk, aiohttp_client: Any
) -> None:
    settings = dingtalk_settings(tmp_path, dingtalk_gateway)
    slow = FakeBackend(reply="finished before shutdown", first_token_delay=0.2)
    assistant = Assistant(settings, Router(local=slow, remote=None, routing=settings.llm.routing))
    client = await client_for(aiohttp_client, settings, assistant)
    body = robot_message("q", gateway=dingtalk_gateway)
    assert (
        await client.post("/dingtalk/callback", data=json.dumps(body), headers=signed_headers())
    ).status == 200
    assert dingtalk_gateway.replies("cid-1to1") == []
    await client.close()
    assert dingtalk_gateway.replies("cid-1to1")[0].startswith("finished before shutdown")


async def test_disabled_bot_mounts_nothing(
    tmp_path: Path, dingtalk_gateway: FakeDingTalk, fake_assistant: Assistant, aiohttp_client: Any
) -> None:
    client = await client_for(
        aiohttp_client, dingtalk_settings(tmp_path, dingtalk_gateway, enabled=False), fake_assistant
    )
    resp = await client.post("/dingtalk/callback", data="{}", headers=signed_headers())
    assert resp.status == 404


def test_http_mode_without_secret_fails_at_start(tmp_path: Path, dingtalk_gateway: FakeDingTalk) -> None:
    with pytest.raises(ConfigError, match="dingtalk.client_secret is not set"):
        create_app(dingtalk_settings(tmp_path, dingtalk_gateway, client_secret=None))
    with pytest.raises(ConfigError, match="Unknown DingTalk webhook 'ops'.*available: team"):
        create_app(dingtalk_settings(tmp_path, dingtalk_gateway, fallback_webhook="ops"))


@pytest.mark.llama
async def test_real_model_answers_a_signed_callback(
    tmp_path: Path,
    dingtalk_gateway: FakeDingTalk,
    aiohttp_client: Any,
    bundled_model: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from tests.fixtures.core import LLAMA_OVERRIDES

    settings = dingtalk_settings(tmp_path, dingtalk_gateway, sections=LLAMA_OVERRIDES)
    assistant = Assistant.from_settings(settings)
    client = await client_for(aiohttp_client, settings, assistant)
    caplog.set_level(logging.INFO)
    body = robot_message("/ask What is the capital of France?", gateway=dingtalk_gateway)
    assert (
        await client.post("/dingtalk/callback", data=json.dumps(body), headers=signed_headers())
    ).status == 200

    def answered() -> list[str]:
        return [r for r in dingtalk_gateway.replies("cid-1to1") if "Answered by" in r]

    # A "Thinking…" notice may come first when the CPU is slow; the answer is the message with the footer.
    [reply] = await dingtalk_gateway.wait_for(answered, within_s=120)
    await client.close()
    await assistant.aclose()
    answer, _, footer = reply.rpartition("\n---\n")
    assert answer.strip()
    assert footer.startswith("Answered by ") and footer.endswith("(local)")
    assert "gemma" in footer.lower() or ".gguf" in footer.lower()
