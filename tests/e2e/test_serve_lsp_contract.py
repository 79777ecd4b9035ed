"""The contract between `hearth serve` and `hearth lsp --server`: the real RemoteBackend client
against the real app (token auth, SSE, the code service), over loopback."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from core.assistant import Assistant
from core.code.service import CodeService
from core.contracts import Answer, Code, Delta
from core.errors import BackendUnavailable, InputError
from core.llm.fake import FakeBackend
from core.llm.router import Router
from lsp.remote import RemoteBackend
from server.app import create_app
from server.auth import TOKENS
from tests.fixtures.core import make_settings


async def collect(stream: Any) -> tuple[str, Answer]:
    parts, answer = [], None
    async for event in stream:
        if isinstance(event, Delta):
            parts.append(event.text)
        elif isinstance(event, Answer):
            answer = event
    assert answer is not None
    return "".join(parts), answer


@pytest.fixture
async def remote(aiohttp_server: Any, tmp_path: Path) -> Any:
    settings = make_settings(tmp_path)
    backend = FakeBackend(reply="    return a + b")
    assistant = Assistant(settings, Router(local=backend, remote=None, routing=settings.llm.routing))
    assistant.code = CodeService(assistant)  # type: ignore[attr-defined]
    server = await aiohttp_server(create_app(settings, assistant=assistant))
    _, token = await server.app[TOKENS].create("dev", [])
    client = RemoteBackend(f"http://127.0.0.1:{server.port}", token)
    client.backend = backend
    client.base = f"http://127.0.0.1:{server.port}"
    yield client
    await client.aclose()


async def test_every_editor_call_streams_an_answer(remote: Any) -> None:
    code = 'def add(a, b):\n    """Add two numbers."""\n'
    for stream in (
        remote.explain_stream(Code(code, "python", "calc.py")),
        remote.generate_stream(Code(code, "python", "calc.py")),
        remote.ask_stream("What does add do?"),
    ):
        text, answer = await collect(stream)
        assert text == "    return a + b" and answer.text.strip() == "return a + b"
        assert answer.backend == "local" and answer.model == "fake-model"
    # Tests stream the model's words, then end in the whole module those words complete.
    remote.backend.reply = "1, 2) == 3\n"
    text, answer = await collect(
        remote.tests_stream(Code(code, "python", "calc.py", failures="assert add(1, 2) == 4"))
    )
    assert text == "1, 2) == 3\n"
    assert answer.text.startswith("import pytest\n\nfrom calc import add\n")
    assert "def test_add():\n    assert add(1, 2) == 3" in answer.text
    assert len(remote.backend.calls) == 4
    editor = [remote.backend.calls[i] for i in (0, 1, 3)]
    assert all(call.options.priority == 0 for call in editor)  # editor priority


async def test_errors_reach_the_editor_as_one_sentence(remote: Any) -> None:
    with pytest.raises(InputError, match="Python"):
        await collect(remote.generate_stream(Code("fn main() {}", "rust", "main.rs")))
    wrong = RemoteBackend(remote.base, "hth_000000000000_" + "x" * 43)
    with pytest.raises(BackendUnavailable, match="refused the token"):
        await collect(wrong.ask_stream("hi"))
    await wrong.aclose()
