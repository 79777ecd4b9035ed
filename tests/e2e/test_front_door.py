"""The same bad inputs through every surface: each refusal comes from the one intake, in that surface's words.

Slack runs through real slack_sdk against the fake Slack API, DingTalk through the fake DingTalk
gateway (English and Chinese), REST through `hearth serve`'s app on loopback, the editor through
the real `hearth lsp` process driven by pytest-lsp. Each case names the core's reason; the expected
sentence is looked up in the surface's own catalogue, so a surface that words a refusal itself (or
lets an exception's text through) fails here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from pygls.exceptions import JsonRpcException

from bot import messages
from core.assistant import Assistant
from core.llm.fake import FakeBackend
from core.llm.router import Router
from core.refusals import ENGLISH, Reason, Refusal, sentence
from server.api import STATUS
from server.app import INTAKE, create_app
from server.auth import TOKENS
from tests.e2e.lsp_rig import (
    Editor,
    ScriptedAPI,
    make_workspace,
    remote_llm,
    start_api,
    start_editor,
    write_config,
)
from tests.fixtures.core import make_settings
from tests.fixtures.dingtalk_gateway import FakeDingTalk, bot_rig, dingtalk_settings, robot_message
from tests.fixtures.slack_api import FakeSlackApi, command_body

LONG = 50_000


def engine(settings: Any, backend: FakeBackend) -> Assistant:
    return Assistant(settings, Router(local=backend, remote=None, routing=settings.llm.routing))


# (case id, the question's kind on chat, its text, the engine is up?, the reason the core gives)
CASES: list[tuple[str, str, str, bool, Reason]] = [
    ("empty", "ask", "   ", True, Reason.EMPTY),
    ("too-long", "ask", "x" * LONG, True, Reason.TOO_LONG),
    ("binary", "ask", "abc\x00def", True, Reason.BINARY),
    ("engine-down", "ask", "How do I deploy?", False, Reason.NOT_READY),
    ("no-tables", "data", "How many tickets?", True, Reason.TABLES_UNAVAILABLE),
    ("no-code", "explain", "   ", True, Reason.EMPTY_CODE),
]
IDS = [c[0] for c in CASES]


def expected(catalogue: dict[Reason, str], reason: Reason, limit: int) -> str:
    values = {"length": LONG, "limit": limit} if reason is Reason.TOO_LONG else {}
    return Refusal(reason, values).text(catalogue)


@pytest.mark.parametrize(("case", "kind", "text", "up", "reason"), CASES, ids=IDS)
async def test_slack_words_each_refusal_from_its_catalogue(
    make_slack: Callable[..., Any],
    slack_api: FakeSlackApi,
    tmp_path: Path,
    case: str,
    kind: str,
    text: str,
    up: bool,
    reason: Reason,
) -> None:
    backend = FakeBackend(reply="never")
    assistant = engine(make_settings(tmp_path), backend)
    h = await make_slack((lambda: assistant) if up else (lambda: None))
    await h.send(command_body(f"/{kind}", text, response_url=slack_api.response_url()))
    await h.bot.drain()
    [hook] = slack_api.of("response_url")
    limit = h.bot.intake.limit_for("slack")
    assert hook.args["text"] == expected(messages.REFUSALS, reason, limit)
    assert hook.args["response_type"] == "ephemeral" and backend.calls == []
    assert not slack_api.of("chat.postMessage")  # refused before anything was posted in the channel


@pytest.mark.parametrize("lang", ["en", "zh"])
@pytest.mark.parametrize(("case", "kind", "text", "up", "reason"), CASES, ids=IDS)
async def test_dingtalk_words_each_refusal_in_the_askers_language(
    tmp_path: Path,
    dingtalk_gateway: FakeDingTalk,
    lang: str,
    case: str,
    kind: str,
    text: str,
    up: bool,
    reason: Reason,
) -> None:
    settings = dingtalk_settings(tmp_path, dingtalk_gateway, language=lang)
    backend = FakeBackend(reply="never")
    assistant = engine(settings, backend)
    words = {"ask": "/ask", "data": "/data", "explain": "/explain"}
    if lang == "zh":
        words = {"ask": "问", "data": "数据", "explain": "解释"}
    async with bot_rig(settings, (lambda: assistant) if up else (lambda: None), dingtalk_gateway) as rig:
        await rig.send(robot_message(f"{words[kind]} {text}", gateway=dingtalk_gateway))
        limit = rig.bot.intake.limit_for("dingtalk")
    [reply] = dingtalk_gateway.replies("cid-1to1")
    catalogue = messages.REFUSALS_ZH if lang == "zh" else messages.REFUSALS
    # The command word counts toward the length the asker sent.
    length = len(text) if reason is not Reason.TOO_LONG else LONG
    assert reply == Refusal(
        reason, {"length": length, "limit": limit} if reason is Reason.TOO_LONG else {}
    ).text(catalogue)
    assert backend.calls == []


REST_ROUTES = {
    "ask": ("/v1/ask", lambda text: {"question": text}),
    "data": ("/v1/tables/ask", lambda text: {"question": text}),
    "explain": ("/v1/code/explain", lambda text: {"code": text, "language": "python"}),
}


@pytest.mark.parametrize(("case", "kind", "text", "up", "reason"), CASES, ids=IDS)
async def test_rest_answers_each_refusal_with_its_status_and_sentence(
    aiohttp_client: Any, tmp_path: Path, case: str, kind: str, text: str, up: bool, reason: Reason
) -> None:
    settings = make_settings(tmp_path)
    backend = FakeBackend(reply="never")
    app = create_app(settings, assistant=engine(settings, backend) if up else None)
    client = await aiohttp_client(app) if up else None
    if client is None:
        # No engine: `hearth serve` with the engine still starting (its build never finishes here).
        app = create_app(settings, assistant=engine(settings, backend))
        client = await aiohttp_client(app)
        app[INTAKE]._engine = lambda: None  # the engine is gone, as while serve retries its build
    _, token = await client.app[TOKENS].create("alice", ["group:eng"])
    path, body = REST_ROUTES[kind]
    resp = await client.post(path, json=body(text), headers={"Authorization": f"Bearer {token}"})
    data = await resp.json()
    limit = client.app[INTAKE].limit_for("rest")
    refusal = Refusal(reason, {"length": LONG, "limit": limit} if reason is Reason.TOO_LONG else {})
    if reason is Reason.NOT_READY:
        refusal = client.app[INTAKE].not_ready()
    assert (resp.status, data["error"]["code"]) == STATUS[reason]
    assert data["message"] == sentence(refusal) == refusal.text(ENGLISH)
    assert backend.calls == []


@pytest.fixture
async def editor(tmp_path: Path) -> AsyncIterator[tuple[Editor, ScriptedAPI, Path]]:
    api = ScriptedAPI(reply=lambda prompt: "never")
    runner = await start_api(api)
    config = write_config(tmp_path, remote_llm(api))
    try:
        async for ed in start_editor(config, make_workspace(tmp_path)):
            yield ed, api, config
    finally:
        await runner.cleanup()


async def test_the_editor_words_each_refusal_from_the_core_catalogue(
    editor: tuple[Editor, ScriptedAPI, Path],
) -> None:
    from core.config import load_settings

    ed, api, config = editor
    settings = load_settings(config, search=False)
    limit = Assistant(settings, Router(local=None, remote=None)).limits.max_question_chars
    uri = ed.open("geometry.py")
    cases = [
        ("hearth.ask", {"question": "   "}, Refusal(Reason.EMPTY)),
        ("hearth.ask", {"question": "x" * LONG}, Refusal(Reason.TOO_LONG, {"length": LONG, "limit": limit})),
        ("hearth.ask", {"question": "abc\x00def"}, Refusal(Reason.BINARY)),
        ("hearth.explain", {"uri": uri, "line": 1}, Refusal(Reason.EMPTY_CODE)),  # a blank line, no function
    ]
    for command, argument, refusal in cases:
        with pytest.raises(JsonRpcException) as caught:
            await ed.execute(command, [argument])
        assert caught.value.message == refusal.text(ENGLISH), command
    shown = [m.message for m in ed.client.messages if m.type.name == "Error"]
    assert shown == [refusal.text(ENGLISH) for _, _, refusal in cases]
    assert api.requests == []


async def test_the_editor_in_process_gets_the_intakes_sentence_when_no_model_takes_completions(
    editor: tuple[Editor, ScriptedAPI, Path], capfd: pytest.CaptureFixture[str]
) -> None:
    """A chat-only remote API cannot take a completion prompt: the intake refuses before any call,
    and the editor logs the core's sentence once (REST answers the same sentence with its 501)."""
    from lsprotocol import types

    ed, api, _ = editor
    uri = ed.open("geometry.py")
    params = types.InlineCompletionParams(
        context=types.InlineCompletionContext(trigger_kind=types.InlineCompletionTriggerKind.Invoked),
        text_document=types.TextDocumentIdentifier(uri=uri),
        position=types.Position(line=2, character=0),
    )
    for _ in range(2):
        result = await ed.client.text_document_inline_completion_async(params)
        assert result is None or not result.items
    assert api.requests == [] and ed.client.messages == []  # no call, and no popup for a suggestion
    logged = capfd.readouterr().err
    line = f"no inline suggestions: {ENGLISH[Reason.COMPLETION_UNAVAILABLE]}"
    assert logged.count("no inline suggestions:") == 1 and line in logged, logged[-3000:]
