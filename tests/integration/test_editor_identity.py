"""The editor user has an identity: team docs are searched with their grants, never as the operator."""

from __future__ import annotations

import getpass
from pathlib import Path

from core.assistant import Assistant
from core.code.workbench import collect
from core.llm.fake import FakeBackend
from core.llm.router import Router
from core.retrieval.search import DocsRetriever
from core.retrieval.sync import Indexer
from lsp.backend import InProcessBackend
from tests.fixtures.retrieval import HashEmbedder, corpus_settings

QUESTION = "salary bands for engineers level 3"


async def editor_prompt(tmp_path: Path, **lsp: object) -> tuple[str, InProcessBackend]:
    settings = corpus_settings(tmp_path, lsp=lsp)
    indexer = Indexer(settings, embedder=HashEmbedder())
    try:
        await indexer.sync()
    finally:
        await indexer.aclose()
    backend = FakeBackend(reply="See [1].")
    retriever = DocsRetriever(settings, embedder=HashEmbedder())
    assistant = Assistant(settings, Router(local=backend, remote=None), retriever=retriever)
    editor = InProcessBackend(assistant)
    await collect(editor.model.ask_stream(QUESTION))
    prompt = "\n".join(m.content for c in backend.calls for m in c.messages)
    await editor.aclose()
    return prompt, editor


async def test_by_default_the_editor_user_reads_public_docs_only(tmp_path: Path) -> None:
    prompt, editor = await editor_prompt(tmp_path)
    assert "70k to 85k" not in prompt
    assert editor.model.acl == frozenset({"public", f"user:lsp:{getpass.getuser()}"})  # type: ignore[attr-defined]


async def test_the_grants_configured_for_the_editor_user_apply(tmp_path: Path) -> None:
    prompt, editor = await editor_prompt(tmp_path, user="alice", acl=["public"])
    # The HR source grants user:alice, but the editor user is user:lsp:alice — a different identity.
    assert "70k to 85k" not in prompt
    prompt, _ = await editor_prompt(tmp_path / "hr", user="hana", acl=["public", "group:hr"])
    assert "70k to 85k" in prompt
