"""CodeService on a scripted backend: prompts, extraction, retrieval fallback, sandboxed runs and repair."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import pytest

import core.code.service as service_module
from core.assistant import Assistant
from core.code.context import build_context
from core.code.generation import GenerationRejected, find_target
from core.code.service import CodeService, collect
from core.contracts import Hit
from core.llm.base import Message, Priority
from core.llm.fake import FakeBackend
from core.llm.router import Router
from tests.fixtures.core import make_settings

SOURCE = 'def add(a, b):\n    """Add two numbers."""\n    ...\n'


def _service(
    tmp_path: Path, reply: object, retriever: object = None, **sandbox: object
) -> tuple[CodeService, FakeBackend]:
    settings = make_settings(tmp_path, sandbox={"timeout_s": 30, **sandbox})
    backend = FakeBackend(reply=reply)  # type: ignore[arg-type]
    assistant = Assistant(
        settings, Router(local=backend, remote=None, routing=settings.llm.routing), retriever=retriever
    )  # type: ignore[arg-type]
    return CodeService(assistant), backend


async def test_explain_streams_with_editor_priority(tmp_path: Path) -> None:
    code, backend = _service(tmp_path, "It adds two numbers.")
    raw, answer = await collect(
        code.explain_stream("def add(a, b):\n    return a + b", "python", path="m.py")
    )
    assert raw == "It adds two numbers." and answer.model == "fake-model"
    call = backend.calls[0]
    assert call.options.priority is Priority.EDITOR
    assert "Explain this python code from m.py" in call.messages[-1].content


async def test_generate_continues_the_function_head(tmp_path: Path) -> None:
    code, backend = _service(tmp_path, "\n    return a + b\n\n\ndef extra():\n    pass")
    made = await code.generate(find_target(SOURCE, 1), "python", path="m.py")
    assert made.code == 'def add(a, b):\n    """Add two numbers."""\n    return a + b\n'
    options = backend.calls[0].options
    assert options.answer_prefix.startswith("```python\ndef add(a, b):") and "\n```" in options.stop


async def test_generate_refuses_prose(tmp_path: Path) -> None:
    code, _ = _service(tmp_path, "Sorry, as a language model I cannot write this.")
    with pytest.raises(GenerationRejected, match="nothing was changed"):
        await code.generate(find_target(SOURCE, 1), "python")


async def test_generate_refuses_other_languages(tmp_path: Path) -> None:
    code, backend = _service(tmp_path, "x")
    with pytest.raises(Exception, match="Python only"):
        await collect(code.generate_stream("// TODO: sort", "go", path="main.go"))
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


def _tests_reply(messages: Sequence[Message]) -> str:
    if "These tests failed" in messages[-1].content:
        return "2, 2) == 4\n"
    return "2, 2) == 5\n"


async def test_generate_run_and_repair_tests_in_the_sandbox(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "calc.py").write_text("def add(a, b):\n    return a + b\n")
    code, backend = _service(tmp_path, _tests_reply, repair_attempts=2)
    made = await code.generate_tests("def add(a, b):\n    return a + b\n", "calc.py")
    assert made.code.startswith("import pytest\n\nfrom calc import add\n")
    overlay = {"test_calc.py": made.code}
    run = await code.run_tests(ws, "test_calc.py", overlay)
    assert not run.ok and run.failures[0].line == made.code.splitlines().index("    assert add(2, 2) == 5")
    assert "assert 4 == 5" in run.failures[0].message
    fixed, text = await code.repair_tests(ws, run, "def add(a, b):\n    return a + b\n", "calc.py", overlay)
    assert fixed.ok and text is not None and "add(2, 2) == 4" in text
    assert fixed.notes == ["Repair 1: test_calc.py: 1 passed, 0 failed."]
    assert len(backend.calls) == 2
    assert not (ws / "test_calc.py").exists()  # runs happen on copies; applying is the editor's job


async def test_a_hanging_test_run_is_stopped(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "test_hang.py").write_text("import time\n\ndef test_forever():\n    time.sleep(600)\n")
    code, _ = _service(tmp_path, "x", timeout_s=4)
    run = await code.run_tests(ws, "test_hang.py")
    assert run.result.timed_out and not run.ok
    assert "time limit" in run.summary()
