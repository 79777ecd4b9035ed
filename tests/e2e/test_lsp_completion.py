"""Inline completion end to end: the real `hearth lsp` process under a pytest-lsp client, the real
llama-server engine with the bundled Gemma 3 270M base model (prefix-only: it declares no FIM tokens)."""

from __future__ import annotations

import ast
import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from lsprotocol import types
from pygls.exceptions import JsonRpcException
from pytest_lsp import client_capabilities

from tests.e2e.lsp_rig import Editor, make_workspace, start_editor, write_config
from tests.fixtures.serve import ServeProcess

HALF = '''import math


def area(r):
    """Area of a circle of radius r."""
    return math.pi * r ** 2


def total(prices):
    """Return the sum of the prices, ignoring negative ones."""
    '''
END = types.Position(line=HALF.count("\n"), character=4)


def llm(**completion: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """Settings: the bundled model on llama-server, and lsp.completion overrides."""
    model = {"local": {"n_ctx": 2048, "n_threads": 2, "parallel": 2}, "routing": {"order": ["local"]}}
    return model, {"index_workspace": False, "completion": completion}


async def editor_for(
    tmp_path: Path, capabilities: str | types.ClientCapabilities = "visual-studio-code", **completion: Any
) -> AsyncIterator[Editor]:
    ws = make_workspace(tmp_path)
    (ws / "prices.py").write_text(HALF)
    model, lsp = llm(**completion)
    config = write_config(tmp_path, model, lsp=lsp)
    async for editor in start_editor(config, ws, capabilities=capabilities):
        yield editor


def inline_params(editor: Editor, uri: str, at: types.Position) -> types.InlineCompletionParams:
    return types.InlineCompletionParams(
        context=types.InlineCompletionContext(trigger_kind=types.InlineCompletionTriggerKind.Automatic),
        text_document=types.TextDocumentIdentifier(uri=uri),
        position=at,
    )


def inline(editor: Editor, uri: str, at: types.Position, msg_id: str | None = None) -> asyncio.Future[Any]:
    """Send textDocument/inlineCompletion now (in order with the notifications); the reply's future."""
    params = inline_params(editor, uri, at)
    # pygls's own send_request writes at once (pytest-lsp's send_request_async is a coroutine,
    # which would send only when awaited, after the notifications that follow it).
    sent = editor.client.protocol.send_request(types.TEXT_DOCUMENT_INLINE_COMPLETION, params, msg_id=msg_id)
    return asyncio.wrap_future(sent)


async def stats(editor: Editor) -> dict[str, Any]:
    """``hearth/completionStats`` as plain dicts (pygls hands unknown results back as named tuples)."""
    result: Any = await editor.client.protocol.send_request_async("hearth/completionStats", None)

    def plain(value: Any) -> Any:
        if hasattr(value, "_asdict"):
            return {k: plain(v) for k, v in value._asdict().items()}
        return list(value) if isinstance(value, (list, tuple)) else value

    out: dict[str, Any] = plain(result)
    return out


async def engine_started(editor: Editor, count: int) -> None:
    """Wait (bounded) until the core has started ``count`` generations."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    while (await stats(editor))["engine"]["started"] < count:
        assert loop.time() < deadline, "the completion never reached the model"
        await asyncio.sleep(0.02)


def type_text(editor: Editor, uri: str, version: int, at: types.Position, text: str) -> types.Position:
    """didChange inserting ``text`` at ``at``; the cursor after it."""
    editor.client.text_document_did_change(
        types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version),
            content_changes=[
                types.TextDocumentContentChangePartial(range=types.Range(start=at, end=at), text=text)
            ],
        )
    )
    return types.Position(line=at.line, character=at.character + len(text))


def suggestion_of(result: Any) -> str:
    items = result.items if result is not None else []
    assert len(items) <= 1
    return str(items[0].insert_text) if items else ""


async def test_inline_suggestion_continues_a_half_written_function(
    tmp_path: Path, bundled_model: Path
) -> None:
    async for editor in editor_for(tmp_path):
        caps = editor.initialized.capabilities if editor.initialized else None
        assert caps is not None and caps.inline_completion_provider is not None
        assert caps.completion_provider is not None  # the fallback for clients without inline completion
        uri = editor.open("prices.py")
        text = suggestion_of(await inline(editor, uri, END))
        assert text.strip(), "no suggestion"
        ast.parse(HALF + text)  # appended at the cursor, the module is valid Python
        assert "\n\n" not in text  # a short suggestion: it stopped at the first blank line
        counts = await stats(editor)
        assert counts["engine"]["finished"] == 1 and counts["lsp"]["served"] == 1


async def test_typing_supersedes_and_cancels_the_stale_generation(
    tmp_path: Path, bundled_model: Path
) -> None:
    async for editor in editor_for(tmp_path, debounce_ms=0):
        uri = editor.open("prices.py")
        first = inline(editor, uri, END)
        await engine_started(editor, 1)
        # The user types while the model works on the first request: a new version, a new request.
        at = type_text(editor, uri, 2, END, "r")
        second = await inline(editor, uri, at)
        assert suggestion_of(await first) == ""  # superseded: no stale suggestion
        text = suggestion_of(second)
        assert text.strip()
        ast.parse(HALF + "r" + text)
        counts = await stats(editor)
        # Two generations started; the stale one was stopped, only the current one finished.
        assert counts["engine"]["started"] == 2 and counts["engine"]["finished"] == 1
        assert counts["engine"]["cancelled"] == 1 and counts["lsp"]["superseded"] == 1
        [stopped_after] = counts["engine"]["cancelled_tokens"]
        assert stopped_after < 48  # stopped long before max_tokens


async def test_a_suggestion_for_an_older_version_of_the_document_is_dropped(
    tmp_path: Path, bundled_model: Path
) -> None:
    async for editor in editor_for(tmp_path, debounce_ms=0):
        uri = editor.open("prices.py")
        pending = inline(editor, uri, END)
        await engine_started(editor, 1)
        # The document changes elsewhere (a paste, a formatter) while the model works: no new request.
        type_text(editor, uri, 2, types.Position(line=0, character=0), "# edited\n")
        assert suggestion_of(await pending) == ""
        counts = await stats(editor)
        assert counts["lsp"]["stale"] == 1 and counts["lsp"]["served"] == 0


async def test_a_burst_of_keystrokes_starts_at_most_one_generation_per_document(
    tmp_path: Path, bundled_model: Path
) -> None:
    async for editor in editor_for(tmp_path, debounce_ms=100):
        uri = editor.open("prices.py")
        at, pending = END, []
        for version, ch in enumerate("return", start=2):
            pending.append(inline(editor, uri, at))
            at = type_text(editor, uri, version, at, ch)
        last = await inline(editor, uri, at)
        assert [suggestion_of(r) for r in await asyncio.gather(*pending)] == [""] * 6
        assert suggestion_of(last).strip()
        counts = await stats(editor)
        assert counts["lsp"]["requests"] == 7 and counts["lsp"]["superseded"] == 6
        assert counts["engine"]["finished"] == 1
        assert counts["engine"]["started"] - counts["engine"]["cancelled"] == 1


async def test_cancel_request_stops_the_suggestion(tmp_path: Path, bundled_model: Path) -> None:
    async for editor in editor_for(tmp_path, debounce_ms=0):
        uri = editor.open("prices.py")
        pending = inline(editor, uri, END, msg_id="typing")
        await engine_started(editor, 1)
        editor.client.protocol.notify(types.CANCEL_REQUEST, types.CancelParams(id="typing"))
        with pytest.raises(JsonRpcException, match="cancel"):
            await asyncio.wait_for(pending, 30)
        counts = await stats(editor)
        assert counts["lsp"]["cancelled"] == 1
        assert counts["engine"]["cancelled"] == 1 and counts["engine"]["finished"] == 0
        assert [m for m in editor.client.messages if m.type == types.MessageType.Error] == []


async def test_completion_items_carry_the_suggestion_for_clients_without_inline_completion(
    tmp_path: Path, bundled_model: Path
) -> None:
    async for editor in editor_for(tmp_path, capabilities="neovim@v0.7.0"):
        uri = editor.open("prices.py")
        at = type_text(editor, uri, 2, END, "retu")
        result = await editor.client.text_document_completion_async(
            types.CompletionParams(text_document=types.TextDocumentIdentifier(uri=uri), position=at)
        )
        assert isinstance(result, types.CompletionList) and result.is_incomplete
        [item] = result.items
        edit = item.text_edit
        assert isinstance(edit, types.TextEdit)
        # The item replaces the word being typed with that word plus the suggestion, so a client
        # that filters by the typed word keeps it.
        assert edit.range.start == types.Position(line=at.line, character=4) and edit.range.end == at
        assert edit.new_text.startswith("retu") and item.label.startswith("retu")
        ast.parse(HALF + edit.new_text)


async def test_clients_with_inline_completion_get_no_duplicate_items(
    tmp_path: Path, bundled_model: Path
) -> None:
    caps = client_capabilities("visual-studio-code")
    assert caps.text_document is not None
    caps.text_document.inline_completion = types.InlineCompletionClientCapabilities()
    async for editor in editor_for(tmp_path, capabilities=caps):
        uri = editor.open("prices.py")
        result = await editor.client.text_document_completion_async(
            types.CompletionParams(text_document=types.TextDocumentIdentifier(uri=uri), position=END)
        )
        assert isinstance(result, types.CompletionList) and list(result.items) == []
        assert (await stats(editor))["engine"]["started"] == 0


async def test_turned_off_by_config(tmp_path: Path) -> None:
    async for editor in editor_for(tmp_path, enabled=False):
        caps = editor.initialized.capabilities if editor.initialized else None
        assert (
            caps is not None and caps.inline_completion_provider is None and caps.completion_provider is None
        )
        uri = editor.open("prices.py")
        with pytest.raises(JsonRpcException):
            await inline(editor, uri, END)
        assert (await stats(editor))["lsp"]["requests"] == 0


async def test_bad_positions_and_a_dead_model_give_no_suggestion_and_no_popup(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    ws = make_workspace(tmp_path)
    (ws / "prices.py").write_text(HALF)
    broken = {"local": {"model_path": str(tmp_path / "missing.gguf")}, "routing": {"order": ["local"]}}
    config = write_config(tmp_path, broken, lsp={"index_workspace": False})
    async for editor in start_editor(config, ws):
        uri = editor.open("prices.py")
        assert suggestion_of(await inline(editor, uri, types.Position(line=500, character=0))) == ""
        assert suggestion_of(await inline(editor, uri, END)) == ""  # no model file: nothing, quietly
        assert suggestion_of(await inline(editor, uri, END)) == ""
        (ws / "blob.py").write_text("data = '\x00\x01'\n")  # a binary buffer: never sent to the model
        blob = editor.open("blob.py")
        assert suggestion_of(await inline(editor, blob, types.Position(line=1, character=0))) == ""
        counts = await stats(editor)
        assert counts["lsp"]["failed"] == 2 and counts["lsp"]["requests"] == 4
        assert editor.client.messages == []  # no window/showMessage for a suggestion that did not come
    # The server's log (its stderr, forwarded here) says why once, not once per keystroke.
    logged = capfd.readouterr().err
    assert logged.count("no inline suggestions:") == 1, logged[-3000:]
    assert "missing.gguf" in logged.split("no inline suggestions:", 1)[1].split("\n", 1)[0]


async def test_remote_mode_suggests_through_hearth_serve_and_a_superseded_request_stops_there(
    tmp_path: Path, bundled_model: Path, hearth_serve: Any
) -> None:
    import aiohttp

    model, _ = llm()
    server: ServeProcess = await hearth_serve({"llm": model})
    token = await server.token("dev")
    ws = make_workspace(tmp_path)
    (ws / "prices.py").write_text(HALF)
    (tmp_path / "client").mkdir()
    lsp = {"index_workspace": False, "completion": {"debounce_ms": 0}}
    config = write_config(tmp_path / "client", {"local": {"enabled": False}}, lsp=lsp)

    async def metrics(http: aiohttp.ClientSession) -> str:
        async with http.get("/metrics") as resp:
            return await resp.text()

    args = ["--server", server.url, "--token", token]
    async with aiohttp.ClientSession(server.url) as http:
        async for editor in start_editor(config, ws, extra_args=args):
            uri = editor.open("prices.py")
            first = inline(editor, uri, END)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 60
            # Wait until the server's engine has taken the first request (it holds a model slot).
            while "hearth_local_queue_wait_seconds_count 1.0" not in await metrics(http):
                assert loop.time() < deadline and not first.done(), "the request never reached the engine"
                await asyncio.sleep(0.05)
            at = type_text(editor, uri, 2, END, "r")
            second = await inline(editor, uri, at)
            assert suggestion_of(await first) == ""
            text = suggestion_of(second)
            assert text.strip()
            ast.parse(HALF + "r" + text)
        seen = await metrics(http)
    # Both went through the server's front door as the editor's; the superseded one was stopped there
    # when the language server closed its connection.
    assert 'hearth_answers_total{action="code.complete",status="ok",surface="lsp"} 1.0' in seen
    assert 'hearth_answers_total{action="code.complete",status="cancelled",surface="lsp"} 1.0' in seen


NVIM_SCRIPT = r"""
local out = {}
local ok, err = pcall(function()
  package.path = vim.env.HEARTH_SNIPPET_DIR .. '/?.lua;' .. package.path
  local hearth = require('hearth')
  hearth.cmd = { vim.env.HEARTH_BIN, '--config', vim.env.HEARTH_NVIM_CONFIG, 'lsp' }
  vim.cmd('filetype on')
  vim.cmd('edit ' .. vim.fn.fnameescape(vim.env.HEARTH_NVIM_FILE))
  local client
  vim.wait(30000, function()
    client = vim.lsp.get_active_clients()[1]
    return client ~= nil and client.initialized
  end, 50)
  out.initialized = client ~= nil and client.initialized or false
  local last = vim.api.nvim_buf_line_count(0)
  local got, answered = nil, false
  -- The cursor after the indentation of the last line (insert mode's place there).
  hearth.suggest(0, function(item) got, answered = item, true end, { line = last - 1, character = 4 })
  vim.wait(240000, function() return answered end, 50)
  out.answered = answered
  out.visible = hearth.visible(0)
  out.ghost = #vim.api.nvim_buf_get_extmarks(0, vim.api.nvim_create_namespace('hearth-suggestion'), 0, -1, {})
  out.accepted = hearth.accept(0)
  out.lines = vim.api.nvim_buf_get_lines(0, 0, -1, false)
end)
if not ok then out.lua_error = tostring(err) end
local f = io.open(vim.env.HEARTH_NVIM_OUT, 'w')
f:write(vim.fn.json_encode(out))
f:close()
vim.cmd('qa!')
"""


async def test_headless_neovim_shows_and_accepts_a_suggestion(tmp_path: Path, bundled_model: Path) -> None:
    from tests.e2e.test_lsp_neovim import _ensure_neovim, run_headless_neovim

    nvim = await asyncio.to_thread(_ensure_neovim)  # Debian's 0.7 (apt-get) when it is missing
    ws = make_workspace(tmp_path)
    (ws / "prices.py").write_text(HALF)
    model, lsp = llm()
    config = write_config(tmp_path, model, lsp=lsp)
    result = await run_headless_neovim(nvim, NVIM_SCRIPT, ws / "prices.py", config, tmp_path, 280)
    assert "lua_error" not in result, result
    # Neovim 0.7 has no inline completion: the completion item became ghost text, then the buffer.
    assert result["initialized"] and result["answered"] and result["visible"] and result["ghost"] == 1
    assert result["accepted"] is True
    text = "\n".join(result["lines"])
    assert text.startswith(HALF) and len(text) > len(HALF)
    ast.parse(text)


async def test_the_rest_endpoint_has_its_own_rate_limit_and_the_remote_client_reads_it(
    aiohttp_server: Any, tmp_path: Path
) -> None:
    """POST /v1/code/complete through the real app and the real RemoteBackend: an editor asks once per
    keystroke, so suggestions have a bucket of their own; the other endpoints keep theirs."""
    from core.assistant import Assistant
    from core.contracts import Completion
    from core.errors import BackendUnavailable
    from core.llm.fake import FakeBackend
    from core.llm.router import Router
    from lsp.remote import RemoteBackend
    from server.app import create_app
    from server.auth import TOKENS
    from tests.fixtures.core import make_settings

    settings = make_settings(
        tmp_path, server={"rate_limit_per_minute": 2, "completion_rate_limit_per_minute": 50}
    )
    backend = FakeBackend(reply="return a + b\n\n\ndef sub(a, b):")
    assistant = Assistant(settings, Router(local=backend, remote=None, routing=settings.llm.routing))
    server = await aiohttp_server(create_app(settings, assistant=assistant))
    _, token = await server.app[TOKENS].create("dev", [])
    client = RemoteBackend(f"http://127.0.0.1:{server.port}", token)
    try:
        for _ in range(5):  # more than rate_limit_per_minute
            events = [
                e
                async for e in client.complete_stream(
                    Completion("def add(a, b):\n    ", "", "python", "m.py")
                )
            ]
            assert events[-1].text == "return a + b"  # type: ignore[union-attr]
        assert all(call.options.prompt_parts for call in backend.calls) and len(backend.calls) == 5
        for _ in range(2):
            [e async for e in client.ask_stream("What does add do?")]
        with pytest.raises(BackendUnavailable, match="429"):
            [e async for e in client.ask_stream("And sub?")]
    finally:
        await client.aclose()
