"""The editor's workspace index: built in the background by the retrieval engine, refreshed on save."""

from __future__ import annotations

import asyncio
from pathlib import Path

from core.assistant import Assistant
from core.code.context import build_context
from core.code.service import CodeService
from core.llm.fake import FakeBackend
from core.llm.router import Router
from lsp.workspace_index import WorkspaceIndex
from tests.fixtures.core import make_settings
from tests.fixtures.retrieval import HashEmbedder


async def _synced(index: WorkspaceIndex) -> None:
    index.synced.clear()
    index.schedule()
    await asyncio.wait_for(index.synced.wait(), 120)
    assert index.last_error is None


async def test_workspace_index_feeds_code_context_and_follows_saves(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "billing.py").write_text(
        "def invoice_total(lines):\n    return sum(line.amount for line in lines)\n"
    )
    (ws / "app.py").write_text("from billing import invoice_total\n\n\ndef checkout(cart):\n    ...\n")
    settings = make_settings(tmp_path)
    index = WorkspaceIndex(settings, ws, embedder=HashEmbedder())
    assert await index.search("invoice_total", acl=None, k=3) == []  # nothing before the first sync
    try:
        await _synced(index)
        hits = await index.search("invoice_total amount lines", acl=None, k=3)
        assert any("def invoice_total" in h.text for h in hits)

        assistant = Assistant(settings, Router(local=FakeBackend(), remote=None))
        source = (ws / "app.py").read_text()
        ctx = build_context(source, "app.py", 3, 3, selection="invoice_total(cart.lines)")
        enriched = await CodeService(assistant).with_workspace_context(ctx, index)
        assert "def invoice_total" in enriched.prompt_context

        (ws / "shipping.py").write_text("def shipping_cost(weight_kg):\n    return 4.5 + weight_kg * 1.2\n")
        await _synced(index)  # what didSave triggers
        hits = await index.search("shipping_cost weight_kg", acl=None, k=3)
        assert any("shipping_cost" in h.text for h in hits)
        assert index.settings.store_path.is_relative_to(settings.home)  # never the shared docs index
    finally:
        await index.aclose()
