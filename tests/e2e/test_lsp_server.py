"""End to end: the real `hearth lsp` process under a pytest-lsp client, the model behind the real
openai backend pointed at a scripted API on loopback, tests run in the real sandbox."""

from __future__ import annotations

import ast
import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from lsprotocol import types
from pygls.exceptions import JsonRpcException

from tests.e2e.lsp_rig import (
    Editor,
    ScriptedAPI,
    make_workspace,
    remote_llm,
    start_api,
    start_editor,
    write_config,
)

GOOD_TOTAL = "```python\ndef total(prices):\n    return sum(p for p in prices if p >= 0)\n```\n"
WRONG_TESTS = "```python\nfrom geometry import add\n\n\ndef test_add():\n    assert add(1, 2) == 4\n```\n"
RIGHT_TESTS = (
    "```python\nfrom geometry import add\n\n\ndef test_add():\n    assert add(1, 2) == 3\n\n\n"
    "def test_add_negative():\n    assert add(-1, -1) == -2\n```\n"
)


FIXED_ADD = '```python\ndef add(a, b):\n    """Add two numbers."""\n    return a + b\n```\n'


def reply(prompt: str) -> str:
    """The scripted model: answers by which template produced the prompt."""
    if "Fix this function; these tests fail" in prompt:
        return FIXED_ADD
    if "These tests failed" in prompt:
        return RIGHT_TESTS
    if "Write a pytest module" in prompt:
        return WRONG_TESTS
    if "Complete this code" in prompt:
        return GOOD_TOTAL
    if "Explain this" in prompt:
        return "It computes the **area** of a circle with `math.pi * r ** 2`. " * 3
    return "The workspace answer."


@pytest.fixture
async def api() -> AsyncIterator[ScriptedAPI]:
    api = ScriptedAPI(reply=reply)
    runner = await start_api(api)
    yield api
    await runner.cleanup()


@pytest.fixture
async def editor(tmp_path: Path, api: ScriptedAPI) -> AsyncIterator[Editor]:
    ws = make_workspace(tmp_path)
    config = write_config(tmp_path, remote_llm(api))
    async for ed in start_editor(config, ws):
        yield ed


async def test_code_actions_are_instant_and_never_call_the_model(editor: Editor, api: ScriptedAPI) -> None:
    uri = editor.open("geometry.py")
    actions = await editor.actions(uri, 4)
    titles = [a.title for a in actions]
    assert titles == ["Hearth: Explain", "Hearth: Generate", "Hearth: Generate tests", "Hearth: Run tests"]
    assert all(a.disabled is None for a in actions)
    assert actions[0].command is not None and actions[0].command.command == "hearth.explain"
    md = editor.open("notes.md", "markdown")
    md_actions = await editor.actions(md, 0)
    assert md_actions[0].disabled is None  # Explain still works for other languages
    assert all(a.disabled is not None and "Python only" in a.disabled.reason for a in md_actions[1:])
    assert api.requests == []


async def test_explain_streams_with_progress_and_opens_a_markdown_document(
    editor: Editor, api: ScriptedAPI
) -> None:
    uri = editor.open("geometry.py")
    actions = await editor.actions(uri, 4)
    cmd = actions[0].command
    assert cmd is not None
    result = await editor.execute(cmd.command, cmd.arguments or [])
    assert "**area** of a circle" in result["markdown"]
    assert result["model"] == "fake-coder"
    assert "def area(r):" in api.requests[0]["messages"][-1]["content"]  # the enclosing function was sent
    shown = editor.client.shown_documents
    assert len(shown) == 1 and shown[0].uri.endswith(".md")
    shown_text = await asyncio.to_thread(Path(shown[0].uri.removeprefix("file://")).read_text)
    assert shown_text.startswith("# geometry.py — area")
    kinds = [type(v).__name__ for reports in editor.client.progress_reports.values() for v in reports]
    assert kinds[0] == "WorkDoneProgressBegin" and kinds[-1] == "WorkDoneProgressEnd"


async def test_generate_turns_a_todo_into_code_as_a_workspace_edit(editor: Editor) -> None:
    uri = editor.open("geometry.py")
    result = await editor.execute(
        "hearth.generate",
        [{"uri": uri, "range": {"start": {"line": 13, "character": 0}, "end": {"line": 13, "character": 0}}}],
    )
    assert result["applied"] is True
    [edit] = editor.edits
    [text_edit] = edit.edit.changes[uri]  # type: ignore[index]
    assert text_edit.range.start.line == 13
    assert text_edit.new_text.startswith("# TODO: return the total")
    source = (editor.root / "geometry.py").read_text()
    namespace: dict[str, object] = {}
    exec(compile(ast.parse(source), "geometry.py", "exec"), namespace)
    assert namespace["total"]([3, -1, 4]) == 7  # type: ignore[operator]


async def test_invalid_model_output_is_reported_and_nothing_applied(
    tmp_path: Path, api: ScriptedAPI, editor: Editor
) -> None:
    api.reply = lambda prompt: "I am sorry, I cannot help with that request."
    uri = editor.open("geometry.py")
    with pytest.raises(JsonRpcException, match="not valid Python"):
        await editor.execute("hearth.generate", [{"uri": uri, "line": 13}])
    assert editor.edits == []
    assert any("not valid Python" in m.message for m in editor.client.messages)


async def test_empty_selection_and_unsupported_language_get_clear_errors(editor: Editor) -> None:
    uri = editor.open("geometry.py")
    with pytest.raises(JsonRpcException, match="select some code"):
        await editor.execute("hearth.explain", [{"uri": uri, "line": 1}])
    md = editor.open("notes.md", "markdown")
    with pytest.raises(JsonRpcException, match="Python only"):
        await editor.execute("hearth.generateTests", [{"uri": md, "line": 0}])
    with pytest.raises(JsonRpcException, match="No tests at tests/test_geometry.py"):
        await editor.execute("hearth.runTests", [{"uri": uri, "line": 9}])


async def test_a_malformed_command_argument_is_refused_in_one_sentence(
    editor: Editor, api: ScriptedAPI
) -> None:
    uri = editor.open("geometry.py")
    with pytest.raises(JsonRpcException) as missing:
        await editor.execute("hearth.generate", [])
    assert missing.value.message == (
        "hearth.generate needs an argument {'uri': ..., 'range': ...} (code actions pass it)."
    )
    with pytest.raises(JsonRpcException, match=r"^hearth.explain needs an argument"):
        await editor.client.workspace_execute_command_async(
            types.ExecuteCommandParams(command="hearth.explain")  # no arguments at all
        )
    with pytest.raises(JsonRpcException, match=r"^hearth.runTests needs .*'fix': 'tests' or 'code'"):
        await editor.execute("hearth.runTests", [{"uri": uri, "line": 9, "fix": "everything"}])
    with pytest.raises(JsonRpcException, match=r"^hearth.ask needs a question"):
        await editor.execute("hearth.ask", [{"q": "Where is area computed?"}])
    with pytest.raises(JsonRpcException, match=r"^Unknown command 'hearth.nope'; available: hearth.explain"):
        await editor.execute("hearth.nope", [{"uri": uri}])
    shown = [m.message for m in editor.client.messages if m.type == types.MessageType.Error]
    assert len(shown) == 5 and all("\n" not in m and "Traceback" not in m for m in shown)
    assert api.requests == []


@pytest.mark.slow
async def test_generate_tests_run_them_sandboxed_diagnose_and_repair(
    editor: Editor, api: ScriptedAPI
) -> None:
    uri = editor.open("geometry.py")
    made = await editor.execute("hearth.generateTests", [{"uri": uri, "line": 9}])
    assert made["path"] == "tests/test_geometry.py" and made["applied"] is True
    created = editor.edits[0].edit.document_changes
    assert created is not None and isinstance(created[0], types.CreateFile)
    test_file = editor.root / "tests" / "test_geometry.py"
    assert "assert add(1, 2) == 4" in test_file.read_text()

    run = await editor.execute("hearth.runTests", [{"uri": uri, "line": 9}])
    assert run["failed"] == 1 and run["passed"] == 0, run["output"]
    diags = editor.client.diagnostics[test_file.as_uri()]
    [diag] = diags
    assert diag.range.start.line == test_file.read_text().splitlines().index("    assert add(1, 2) == 4")
    assert "assert 3 == 4" in diag.message

    fixed = await editor.execute("hearth.runTests", [{"uri": uri, "line": 9, "fix": "tests"}])
    assert fixed["ok"] is True and fixed["repaired"] is True and fixed["passed"] == 2, fixed
    assert list(editor.client.diagnostics[test_file.as_uri()]) == []
    assert "add(-1, -1) == -2" in test_file.read_text()
    assert any("These tests failed" in r["messages"][-1]["content"] for r in api.requests)


async def test_generate_tests_into_an_existing_file_never_shadows_a_test_there(
    editor: Editor, api: ScriptedAPI
) -> None:
    """The file has a test_add of its own: the generated one arrives as test_add_2, and the person is told."""
    test_file = editor.root / "tests" / "test_geometry.py"
    mine = "from geometry import add\n\n\ndef test_add():\n    assert add(2, 2) == 4\n"
    test_file.write_text(mine)
    uri = editor.open("geometry.py")
    made = await editor.execute("hearth.generateTests", [{"uri": uri, "line": 9}])
    assert made["applied"] is True and made["path"] == "tests/test_geometry.py"
    text = test_file.read_text()
    assert text.startswith(mine)  # the person's test is untouched, first
    tree = ast.parse(text)
    names = [n.name for n in tree.body if isinstance(n, ast.FunctionDef)]
    assert names == ["test_add", "test_add_2"]
    assert text.count("from geometry import add") == 1  # the import is not repeated
    said = [m.message for m in editor.client.messages]
    assert any("test_add → test_add_2" in m and "tests/test_geometry.py" in m for m in said), said
    assert [d.uri for d in editor.client.shown_documents][-1] == test_file.as_uri()


@pytest.mark.slow
async def test_run_tests_can_repair_the_code_under_test(editor: Editor, api: ScriptedAPI) -> None:
    module = editor.root / "geometry.py"
    module.write_text(module.read_text().replace("return a + b", "return a - b"))  # a bug
    (editor.root / "tests" / "test_geometry.py").write_text(
        "from geometry import add\n\n\ndef test_add():\n    assert add(1, 2) == 3\n"
    )
    uri = editor.open("geometry.py")
    plain = await editor.execute("hearth.runTests", [{"uri": uri, "line": 10}])
    assert plain["failed"] == 1 and api.requests == []  # no repair unless asked
    fixed = await editor.execute("hearth.runTests", [{"uri": uri, "line": 10, "fix": "code"}])
    assert fixed["ok"] is True and fixed["repaired"] is True, fixed
    [edit] = editor.edits
    [change] = edit.edit.changes[uri]  # type: ignore[index]
    assert (change.range.start.line, change.range.end.line) == (8, 10)
    assert "return a + b" in module.read_text() and "return a - b" not in module.read_text()
    assert "assert -1 == 3" in api.requests[0]["messages"][-1]["content"]  # the failure reached the model


async def test_cancel_request_stops_generation(editor: Editor, api: ScriptedAPI) -> None:
    api.token_delay = 0.2
    api.reply = lambda prompt: "word " * 2000
    uri = editor.open("geometry.py")
    params = types.ExecuteCommandParams(command="hearth.explain", arguments=[{"uri": uri, "line": 4}])
    pending = asyncio.ensure_future(
        editor.client.protocol.send_request_async(types.WORKSPACE_EXECUTE_COMMAND, params, msg_id="cancel-me")
    )
    await asyncio.wait_for(api.started.wait(), 20)
    editor.client.protocol.notify(types.CANCEL_REQUEST, types.CancelParams(id="cancel-me"))
    with pytest.raises(JsonRpcException, match="cancel"):
        await asyncio.wait_for(pending, 10)
    # The model stream was closed: the API saw its client go away long before the 400-second reply ended.
    await asyncio.wait_for(api.disconnected.wait(), 10)


@pytest.mark.llama
async def test_explain_with_the_real_bundled_model(tmp_path: Path, bundled_model: Path) -> None:
    llm = {"local": {"n_ctx": 1024, "n_threads": 2}, "max_tokens": 24, "routing": {"order": ["local"]}}
    config = write_config(tmp_path, llm)
    async for editor in start_editor(config, make_workspace(tmp_path)):
        uri = editor.open("geometry.py")
        result = await editor.execute("hearth.explain", [{"uri": uri, "line": 9}])
        body = result["markdown"].split("\n\n", 1)[1].split("\n\n---\n")[0]
        assert body.strip() and body.strip() != "(the model returned nothing)"
        assert result["backend"] == "local" and "gemma" in result["model"].lower()


async def _index_runs_finished(editor: Editor, count: int) -> list[str]:
    """Wait (on $/progress notifications, no polling) until ``count`` workspace-index runs have ended."""

    def ended() -> list[str]:
        return [
            v.message or ""
            for token, values in editor.client.progress_reports.items()
            if str(token).startswith("hearth-index")
            for v in values
            if isinstance(v, types.WorkDoneProgressEnd)
        ]

    while len(ended()) < count:
        await asyncio.wait_for(editor.client.wait_for_notification(types.PROGRESS), 120)
    return ended()


@pytest.mark.slow
async def test_workspace_index_feeds_explain_and_follows_saves(tmp_path: Path, api: ScriptedAPI) -> None:
    ws = make_workspace(tmp_path)
    (ws / "pricing.py").write_text(
        'def apply_discount_rules(items):\n    """Ten percent off orders over 100."""\n'
        "    total = sum(i.price for i in items)\n    return total * 0.9 if total > 100 else total\n"
    )
    (ws / "app.py").write_text(
        "from pricing import apply_discount_rules\n\n\ndef checkout(cart):\n"
        "    return apply_discount_rules(cart.items)\n"
    )
    config = write_config(tmp_path, remote_llm(api), lsp={"index_workspace": True})
    async for editor in start_editor(config, ws):
        [first] = await _index_runs_finished(editor, 1)
        assert "failed" not in first, first
        uri = editor.open("app.py")
        await editor.execute("hearth.explain", [{"uri": uri, "line": 4}])
        prompt = api.requests[-1]["messages"][-1]["content"]
        assert "pricing.py" in prompt and "Ten percent off orders over 100" in prompt
        # The user edits pricing.py and saves it: the index follows, and Explain sees the new rule.
        pricing = ws / "pricing.py"
        pricing.write_text(
            pricing.read_text().replace(
                "Ten percent off orders over 100", "Fifteen percent off orders over 200"
            )
        )
        editor.client.text_document_did_save(
            types.DidSaveTextDocumentParams(text_document=types.TextDocumentIdentifier(uri=pricing.as_uri()))
        )
        ends = await _index_runs_finished(editor, 2)
        assert "failed" not in ends[-1], ends
        await editor.execute("hearth.explain", [{"uri": uri, "line": 4}])
        prompt = api.requests[-1]["messages"][-1]["content"]
        assert "Fifteen percent off orders over 200" in prompt
        assert "Ten percent off orders over 100" not in prompt


async def test_explain_falls_back_to_show_message_without_show_document(
    tmp_path: Path, api: ScriptedAPI
) -> None:
    config = write_config(tmp_path, remote_llm(api))
    async for editor in start_editor(config, make_workspace(tmp_path), capabilities="neovim@v0.7.0"):
        uri = editor.open("geometry.py")
        result = await editor.execute("hearth.explain", [{"uri": uri, "line": 4}])
        assert result["uri"] is None and editor.client.shown_documents == []
        assert any("**area** of a circle" in m.message for m in editor.client.messages)


def _children(pid: int) -> list[int]:
    return [int(c) for t in Path(f"/proc/{pid}/task").iterdir() for c in (t / "children").read_text().split()]


def _alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def _engine_socket(lsp_pid: int) -> str | None:
    """The unix socket of the llama-server that `hearth lsp` (``lsp_pid``) started, if any."""
    for task in Path(f"/proc/{lsp_pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            argv = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
            if argv and argv[0].endswith(b"llama-server") and b"--host" in argv:
                return argv[argv.index(b"--host") + 1].decode()
    return None


ONE_SLOT_LONG_ANSWERS = {
    "local": {"n_ctx": 1024, "n_threads": 2, "parallel": 1},
    "max_tokens": 2000,
    "routing": {"order": ["local"]},
}


def _long_explain(editor: Editor, msg_id: str) -> tuple[asyncio.Future[Any], int]:
    """Start a 2000-token explain as request ``msg_id``; return it and the `hearth lsp` pid."""
    uri = editor.open("geometry.py")
    params = types.ExecuteCommandParams(command="hearth.explain", arguments=[{"uri": uri, "line": 9}])
    pending = asyncio.ensure_future(
        editor.client.protocol.send_request_async(types.WORKSPACE_EXECUTE_COMMAND, params, msg_id=msg_id)
    )
    return pending, editor.client._server.pid  # type: ignore[attr-defined]


@pytest.mark.llama
async def test_cancel_request_frees_the_real_engines_slot(tmp_path: Path, bundled_model: Path) -> None:
    import aiohttp

    config = write_config(tmp_path, ONE_SLOT_LONG_ANSWERS)
    async for editor in start_editor(config, make_workspace(tmp_path)):
        pending, pid = _long_explain(editor, "long")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60

        async def processing(sock: str) -> bool:
            try:
                async with aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=sock)) as http:
                    async with http.get("http://engine/slots") as resp:
                        return resp.status == 200 and any(s["is_processing"] for s in await resp.json())
            except aiohttp.ClientConnectionError:
                return False  # still loading the model

        sock = None
        while sock is None or not await processing(sock):
            assert loop.time() < deadline and not pending.done(), "the engine never started generating"
            await asyncio.sleep(0.1)
            sock = sock or await asyncio.to_thread(_engine_socket, pid)
        editor.client.protocol.notify(types.CANCEL_REQUEST, types.CancelParams(id="long"))
        with pytest.raises(JsonRpcException, match="cancel"):
            await asyncio.wait_for(pending, 10)
        deadline = loop.time() + 10
        while await processing(sock):  # the one slot is free again, long before 2000 tokens
            assert loop.time() < deadline, "$/cancelRequest did not stop the generation in the engine"
            await asyncio.sleep(0.05)


@pytest.mark.llama
async def test_shutdown_while_the_engine_generates_is_clean(tmp_path: Path, bundled_model: Path) -> None:
    config = write_config(tmp_path, ONE_SLOT_LONG_ANSWERS)
    async for editor in start_editor(config, make_workspace(tmp_path)):
        pending, pid = _long_explain(editor, "busy")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        while await asyncio.to_thread(_engine_socket, pid) is None:
            assert loop.time() < deadline and not pending.done()
            await asyncio.sleep(0.1)
        engine = _children(pid)[0]
    # Leaving the loop sent shutdown and exit while the answer was being generated: no internal error,
    # the command was cancelled, and the engine went with the server.
    with pytest.raises(JsonRpcException):
        await pending
    deadline = loop.time() + 10
    while _alive(engine):
        assert loop.time() < deadline, "the engine outlived `hearth lsp`"
        await asyncio.sleep(0.05)
