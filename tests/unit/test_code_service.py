"""CodeService on a scripted backend: prompts, editor priority, language checks, retrieval fallback."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import pytest

import core.code.service as service_module
from core.assistant import Assistant
from core.code.context import build_context
from core.code.service import CodeService
from core.code.workbench import collect
from core.contracts import Code, Hit
from core.llm.base import Priority
from core.llm.fake import FakeBackend
from core.llm.router import Router
from tests.fixtures.core import make_settings

SOURCE = 'def add(a, b):\n    """Add two numbers."""\n    ...\n'


def _service(tmp_path: Path, reply: object, retriever: object = None) -> tuple[CodeService, FakeBackend]:
    settings = make_settings(tmp_path)
    backend = FakeBackend(reply=reply)  # type: ignore[arg-type]
    assistant = Assistant(
        settings, Router(local=backend, remote=None, routing=settings.llm.routing), retriever=retriever
    )  # type: ignore[arg-type]
    return CodeService(assistant), backend


async def test_explain_streams_with_editor_priority(tmp_path: Path) -> None:
    code, backend = _service(tmp_path, "It adds two numbers.")
    raw, answer = await collect(
        code.explain_stream(Code("def add(a, b):\n    return a + b", "python", path="m.py"))
    )
    assert raw == "It adds two numbers." and answer.model == "fake-model"
    call = backend.calls[0]
    assert call.options.priority is Priority.EDITOR
    assert "Explain this python code from m.py" in call.messages[-1].content


async def test_generate_refuses_other_languages(tmp_path: Path) -> None:
    code, backend = _service(tmp_path, "x")
    with pytest.raises(Exception, match="Python only"):
        await collect(code.generate_stream(Code("// TODO: sort", "go", path="main.go")))
    assert backend.calls == []


async def test_empty_code_is_refused_before_the_model(tmp_path: Path) -> None:
    code, backend = _service(tmp_path, "x")
    with pytest.raises(Exception, match="Nothing to work on"):
        await collect(code.explain_stream(Code("\n\n", "python")))
    assert backend.calls == []


class SlowRetriever:
    async def search(self, query: str, *, acl: frozenset[str] | None, k: int) -> Sequence[Hit]:
        await asyncio.sleep(30)
        return []


class BrokenRetriever:
    async def search(self, query: str, *, acl: frozenset[str] | None, k: int) -> Sequence[Hit]:
        raise RuntimeError("qdrant is down")


class GoodRetriever:
    async def search(self, query: str, *, acl: frozenset[str] | None, k: int) -> Sequence[Hit]:
        return [
            Hit("c1", "d1", "file:///ws/m.py", "m.py", "own file", 0.9),
            Hit("c2", "d2", "file:///ws/util.py", "util.py", "def helper(): ...", 0.8, "lines 1-2"),
        ]


async def test_workspace_retrieval_is_optional_and_never_blocks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(service_module, "_RETRIEVAL_TIMEOUT_S", 0.2)
    ctx = build_context(SOURCE, "m.py", 1, 1)
    for retriever in (SlowRetriever(), BrokenRetriever()):
        code, _ = _service(tmp_path, "x", retriever)
        assert (await asyncio.wait_for(code.with_workspace_context(ctx), 5)).retrieved == ()
    code, _ = _service(tmp_path, "x", GoodRetriever())
    enriched = await code.with_workspace_context(ctx)
    assert len(enriched.retrieved) == 1 and "def helper()" in enriched.prompt_context
