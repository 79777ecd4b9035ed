"""Shared rig for the language-server end-to-end tests: a scripted OpenAI-compatible API on loopback,
a workspace, and a pytest-lsp client driving the real `hearth lsp` process."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import yaml
from aiohttp import web
from lsprotocol import types
from pytest_lsp import LanguageClient, client_capabilities, make_test_lsp_client

HEARTH = str(Path(sys.executable).with_name("hearth"))

MODULE = '''import math


def area(r):
    """Area of a circle of radius r."""
    return math.pi * r ** 2


def add(a, b):
    """Add two numbers."""
    return a + b


# TODO: return the total of a list of prices, ignoring negative ones
'''


@dataclass
class ScriptedAPI:
    """An OpenAI-compatible chat API whose reply is a function of the prompt; honours ``stop``.

    It models ``/v1/chat/completions`` streamed as OpenAI does (SSE chunks of the reply, a final
    ``finish_reason: stop``, ``data: [DONE]``) and notices a client that goes away. It leaves out
    non-streamed answers, usage, ``max_tokens``, API keys, error statuses and ``/v1/models``
    (tests/fixtures/openai_server.py covers those for the backend itself).
    """

    reply: Callable[[str], str] = lambda prompt: "An answer."
    token_delay: float = 0.0
    requests: list[dict[str, Any]] = field(default_factory=list)
    started: asyncio.Event = field(default_factory=asyncio.Event)
    disconnected: asyncio.Event = field(default_factory=asyncio.Event)
    base_url: str = ""

    async def chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(body)
        prompt = "\n".join(m["content"] for m in body["messages"])
        text = self.reply(prompt)
        for stop in body.get("stop") or []:
            if stop in text:
                text = text[: text.index(stop)]
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        self.started.set()
        base = {
            "id": "c1",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": "fake-coder",
        }
        pieces = [text[i : i + 8] for i in range(0, len(text), 8)] or [""]
        try:
            for piece in pieces:
                delta = {"choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
                await resp.write(f"data: {json.dumps(base | delta)}\n\n".encode())
                if self.token_delay:
                    await asyncio.sleep(self.token_delay)
            done = {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
            await resp.write(f"data: {json.dumps(base | done)}\n\n".encode())
            await resp.write(b"data: [DONE]\n\n")
            await resp.write_eof()
        except (ConnectionResetError, asyncio.CancelledError):
            self.disconnected.set()
            raise
        return resp


async def start_api(api: ScriptedAPI) -> web.AppRunner:
    """Serve ``api`` on 127.0.0.1 (random port)."""
    app = web.Application()
    app.router.add_post("/v1/chat/completions", api.chat)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    api.base_url = f"http://127.0.0.1:{port}/v1"
    return runner


def write_config(tmp_path: Path, llm: dict[str, Any], **sections: Any) -> Path:
    """A hearth.yaml for the server process."""
    data: dict[str, Any] = {
        "home": str(tmp_path / "home"),
        "llm": llm,
        "sandbox": {"timeout_s": 60, "repair_attempts": 1},
        "lsp": {"index_workspace": False},
    }
    data.update(sections)
    path = tmp_path / "hearth.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def remote_llm(api: ScriptedAPI) -> dict[str, Any]:
    """LLM settings: no local model; the scripted API through the real openai backend."""
    return {
        "local": {"enabled": False},
        "remote": {
            "base_url": api.base_url,
            "api_key": "test-key",
            "model": "fake-coder",
            "max_retries": 0,
            "timeout_s": 20,
        },
        "routing": {"order": ["remote"]},
    }


def make_workspace(tmp_path: Path) -> Path:
    """A small Python project with a tests/ folder."""
    ws = tmp_path / "ws"
    (ws / "tests").mkdir(parents=True)
    (ws / "geometry.py").write_text(MODULE)
    (ws / "notes.md").write_text("# Notes\n\nSome text.\n")
    return ws


@dataclass
class Editor:
    """The test client plus what the server asked it to do."""

    client: LanguageClient
    root: Path
    edits: list[types.ApplyWorkspaceEditParams] = field(default_factory=list)
    initialized: types.InitializeResult | None = None  # what the server answered to initialize

    def uri(self, rel: str) -> str:
        """file:// URI of a workspace file."""
        return (self.root / rel).as_uri()

    def open(self, rel: str, language: str = "python") -> str:
        """didOpen a workspace file; returns its URI."""
        uri = self.uri(rel)
        self.client.text_document_did_open(
            types.DidOpenTextDocumentParams(
                text_document=types.TextDocumentItem(
                    uri=uri, language_id=language, version=1, text=(self.root / rel).read_text()
                )
            )
        )
        return uri

    async def actions(self, uri: str, line: int, end_line: int | None = None) -> list[types.CodeAction]:
        """Request code actions for a range."""
        rng = types.Range(
            start=types.Position(line=line, character=0),
            end=types.Position(line=end_line if end_line is not None else line, character=0),
        )
        result = await self.client.text_document_code_action_async(
            types.CodeActionParams(
                text_document=types.TextDocumentIdentifier(uri=uri),
                range=rng,
                context=types.CodeActionContext(diagnostics=[]),
            )
        )
        return [a for a in result or [] if isinstance(a, types.CodeAction)]

    async def execute(self, command: str, arguments: list[Any]) -> Any:
        """workspace/executeCommand."""
        return await self.client.workspace_execute_command_async(
            types.ExecuteCommandParams(command=command, arguments=arguments)
        )


async def start_editor(
    config: Path,
    root: Path,
    *,
    capabilities: str | types.ClientCapabilities = "visual-studio-code",
    extra_args: list[str] | None = None,
    apply_to_disk: bool = True,
) -> AsyncIterator[Editor]:
    """Start `hearth lsp` under a pytest-lsp client, initialise it on ``root``, yield, shut down."""
    client = make_test_lsp_client()
    _fix_code_action_parsing(client)
    editor = Editor(client, root)

    @client.feature(types.WORKSPACE_APPLY_EDIT)
    def apply_edit(params: types.ApplyWorkspaceEditParams) -> types.ApplyWorkspaceEditResult:
        editor.edits.append(params)
        if apply_to_disk:
            _apply_to_disk(params.edit)
        return types.ApplyWorkspaceEditResult(applied=True)

    await client.start_io(HEARTH, "--log-level", "INFO", "--config", str(config), "lsp", *(extra_args or []))
    caps = client_capabilities(capabilities) if isinstance(capabilities, str) else capabilities
    editor.initialized = await client.initialize_session(
        types.InitializeParams(
            capabilities=caps,
            root_uri=root.as_uri(),
            workspace_folders=[types.WorkspaceFolder(uri=root.as_uri(), name="ws")],
        )
    )
    try:
        yield editor
    finally:
        await client.shutdown_session()


def _fix_code_action_parsing(client: LanguageClient) -> None:
    """lsprotocol parses any CodeAction carrying a command as a bare Command; tell them apart."""
    converter = client.protocol._converter

    def hook(obj: Any, _: type) -> types.Command | types.CodeAction:
        if isinstance(obj.get("command"), str):
            return converter.structure(obj, types.Command)
        return converter.structure(obj, types.CodeAction)

    converter.register_structure_hook(Union[types.Command, types.CodeAction], hook)  # noqa: UP007


def _apply_to_disk(edit: types.WorkspaceEdit) -> None:
    """Apply simple edits to the files, like an editor that saves (whole-line and append edits)."""
    from urllib.parse import unquote, urlparse

    def path_of(uri: str) -> Path:
        return Path(unquote(urlparse(uri).path))

    changes: list[tuple[str, list[types.TextEdit]]] = list((edit.changes or {}).items())
    for change in edit.document_changes or []:
        if isinstance(change, types.CreateFile):
            path = path_of(change.uri)
            if not path.exists():
                path.write_text("")
        elif isinstance(change, types.TextDocumentEdit):
            changes.append(
                (change.text_document.uri, [e for e in change.edits if isinstance(e, types.TextEdit)])
            )
    for uri, edits in changes:
        path = path_of(uri)
        text = path.read_text() if path.exists() else ""
        for e in sorted(edits, key=lambda e: (e.range.start.line, e.range.start.character), reverse=True):
            text = _splice(text, e)
        path.write_text(text)


def _splice(text: str, edit: types.TextEdit) -> str:
    lines = text.splitlines(keepends=True)

    def offset(pos: types.Position) -> int:
        if pos.line >= len(lines):
            return len(text)
        return sum(len(line) for line in lines[: pos.line]) + min(pos.character, len(lines[pos.line]))

    return text[: offset(edit.range.start)] + edit.new_text + text[offset(edit.range.end) :]
