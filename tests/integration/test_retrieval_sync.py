"""Sync through the embedded store (Qdrant Edge): edits, deletions, re-adds, a killed run, changed_since."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from core.config import Settings
from core.retrieval.search import DocsRetriever
from core.retrieval.sync import Indexer, changed_since, open_store
from tests.fixtures.retrieval import CrashingEmbedder, HashEmbedder


async def stored(settings: Settings) -> list[dict[str, Any]]:
    """Every chunk payload in the store."""
    store = open_store(settings)
    try:
        points, _ = await store.scroll(None, 10_000)
        return [p.payload for p in points]
    finally:
        await store.aclose()


async def sync(settings: Settings, embedder: Any = None) -> dict[str, Any]:
    indexer = Indexer(settings, embedder=embedder)
    try:
        return {r.source: r for r in await indexer.sync()}
    finally:
        await indexer.aclose()


def folder(settings: Settings, source: str) -> Path:
    return Path(next(s for s in settings.sources if s.name == source).options()["path"])


@pytest.mark.slow
async def test_edit_delete_and_readd_files(corpus: Settings) -> None:
    first = await sync(corpus)
    assert first["public"].added == 2 and first["public"].chunks >= 2
    docs = folder(corpus, "public")
    leave = (docs / "leave.md").read_text()
    (docs / "leave.md").write_text(leave.replace("20 vacation days", "25 vacation days"))
    (docs / "expenses.md").unlink()
    second = await sync(corpus)
    r = second["public"]
    assert (r.added, r.updated, r.deleted, r.unchanged) == (0, 1, 1, 0)
    assert (second["eng"].unchanged, second["eng"].chunks) == (2, 0)
    chunks = await stored(corpus)
    assert not any(c["doc_id"] == "public:expenses.md" for c in chunks)
    leave_chunks = [c for c in chunks if c["doc_id"] == "public:leave.md"]
    assert len({c["version"] for c in leave_chunks}) == 1  # the old version's chunks are gone
    assert any("25 vacation days" in c["text"] for c in leave_chunks)
    assert not any("20 vacation days" in c["text"] for c in leave_chunks)
    retriever = DocsRetriever(corpus)
    try:
        hits = await retriever.search("hotel reimbursement Expensify", acl=None, k=5)
        assert all(h.doc_id != "public:expenses.md" for h in hits)
        (docs / "expenses.md").write_text("# Expenses\n\nHotels are reimbursed up to 200 EUR per night.\n")
        third = await sync(corpus)
        assert third["public"].added == 1 and third["public"].unchanged == 1
        hits = await retriever.search("hotel reimbursement per night", acl=None, k=1)
        assert hits[0].doc_id == "public:expenses.md" and "200 EUR" in hits[0].text
    finally:
        await retriever.aclose()
    fourth = await sync(corpus)
    assert sum(r.chunks for r in fourth.values()) == 0
    assert sum(r.unchanged for r in fourth.values()) == 5


async def test_a_killed_run_leaves_the_store_consistent_and_the_next_run_completes(tmp_path: Path) -> None:
    from tests.fixtures.retrieval import corpus_settings

    settings = corpus_settings(tmp_path, embed={"batch_size": 1})
    docs = folder(settings, "public")
    await sync(settings, HashEmbedder())
    for i in range(4):
        (docs / f"extra{i}.md").write_text(f"# Extra {i}\n\nExtra document number {i} about topic {i}.\n")
    (docs / "leave.md").write_text("# Leave policy\n\nEveryone gets 30 vacation days.\n")
    # Writes go in groups of 4 chunks: the crash lands after the first group was fully written.
    with pytest.raises(KeyboardInterrupt):
        await sync(settings, CrashingEmbedder(crash_on=2))
    mid = await stored(settings)
    # Consistent: every stored chunk belongs to exactly one version of its document.
    versions: dict[str, set[str]] = {}
    for c in mid:
        versions.setdefault(c["doc_id"], set()).add(c["version"])
    assert versions and all(len(v) == 1 for v in versions.values()), versions
    assert any(d.startswith("public:extra") for d in versions)  # some of the new work survived
    assert "public:leave.md" in versions and "public:expenses.md" in versions  # nothing old was lost
    reports = await sync(settings, HashEmbedder())
    final = await stored(settings)
    by_doc: dict[str, set[str]] = {}
    for c in final:
        by_doc.setdefault(c["doc_id"], set()).add(c["version"])
    assert all(len(v) == 1 for v in by_doc.values()), by_doc
    assert {d for d in by_doc if d.startswith("public:")} == {
        "public:leave.md",
        "public:expenses.md",
        *(f"public:extra{i}.md" for i in range(4)),
    }
    assert reports["public"].added + reports["public"].updated + reports["public"].unchanged == 6
    assert any("30 vacation days" in c["text"] for c in final if c["doc_id"] == "public:leave.md")
    again = await sync(settings, HashEmbedder())
    assert again["public"].chunks == 0 and again["public"].unchanged == 6


async def test_changed_since_lists_documents_for_digests(corpus: Settings) -> None:
    docs = folder(corpus, "public")
    old = datetime(2025, 1, 1, tzinfo=UTC).timestamp()
    for path in docs.iterdir():
        os.utime(path, (old, old))
    await sync(corpus, HashEmbedder())
    cutoff = datetime.now(UTC) + timedelta(seconds=1)
    assert await changed_since(corpus, ["public"], cutoff) == []
    (docs / "leave.md").write_text("# Leave policy\n\nNew rules.\n")
    await sync(corpus, HashEmbedder())
    changed = await changed_since(corpus, ["public", "eng"], cutoff - timedelta(seconds=1))
    assert [c.doc_id for c in changed] == ["public:leave.md"]
    assert changed[0].title == "Leave policy" and changed[0].source == "public"
    assert changed[0].uri.endswith("leave.md") and changed[0].updated_at.tzinfo is not None


async def test_acl_changes_relabel_chunks_and_removed_sources_leave_the_index(corpus: Settings) -> None:
    await sync(corpus, HashEmbedder())
    data = corpus.model_dump(mode="json")
    data["sources"] = [
        {**s, "acl": ["group:staff"]} if s["name"] == "public" else s
        for s in data["sources"]
        if s["name"] != "hr"
    ]
    changed = Settings(**data)
    reports = await sync(changed, HashEmbedder())
    assert reports["hr"].deleted == 1
    assert reports["public"].unchanged == 2 and reports["public"].chunks == 0  # relabelled, not re-embedded
    chunks = await stored(changed)
    assert not any(c["source"] == "hr" for c in chunks)
    assert {tuple(c["acl"]) for c in chunks if c["source"] == "public"} == {("group:staff",)}
    retriever = DocsRetriever(changed, embedder=HashEmbedder())
    try:
        assert await retriever.search("vacation days", acl=frozenset({"public"}), k=5, mode="bm25") == []
        staff = await retriever.search("vacation days", acl=frozenset({"group:staff"}), k=5, mode="bm25")
        assert staff and staff[0].doc_id == "public:leave.md"
    finally:
        await retriever.aclose()


async def test_a_failing_source_keeps_its_index_and_others_still_sync(corpus: Settings) -> None:
    await sync(corpus, HashEmbedder())
    public = folder(corpus, "public")
    public.rename(public.with_name("moved"))
    (folder(corpus, "eng") / "new.md").write_text("# New\n\nA new engineering page.\n")
    reports = await sync(corpus, HashEmbedder())
    assert reports["public"].error and "does not exist" in reports["public"].error
    assert reports["public"].deleted == 0 and reports["eng"].added == 1
    assert {c["doc_id"] for c in await stored(corpus) if c["source"] == "public"} == {
        "public:leave.md",
        "public:expenses.md",
    }
