"""`hearth store migrate`: a round trip edge → a second edge shard through the same code path as a
server (no Qdrant binary here), an interrupted copy that resumes, and what `hearth store info` and
`hearth doctor` say about the store."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from core.config import Settings
from core.errors import RetrievalError
from core.retrieval.migrate import migrate
from core.retrieval.search import DocsRetriever
from core.retrieval.store import StoredChunk
from core.retrieval.stores import open_store
from core.retrieval.sync import Indexer
from server.cli import main
from tests.fixtures.retrieval import HashEmbedder, corpus_settings


async def indexed(tmp_path: Path) -> Settings:
    settings = corpus_settings(tmp_path)
    indexer = Indexer(settings, embedder=HashEmbedder())
    try:
        await indexer.sync()
    finally:
        await indexer.aclose()
    return settings


async def everything(settings: Settings, **where: Any) -> dict[str, StoredChunk]:
    store = open_store(settings, **where)
    try:
        points, _ = await store.scroll(None, 10_000)
        return {p.id: p for p in points}
    finally:
        await store.aclose()


def config_file(tmp_path: Path, settings: Settings) -> Path:
    path = tmp_path / "hearth.yaml"
    path.write_text(
        yaml.safe_dump(settings.model_dump(mode="json", include={"sources", "retrieval", "home"}))
    )
    return path


def test_migrate_round_trip_copies_vectors_and_payload_and_the_copy_searches_the_same(
    tmp_path: Path,
) -> None:
    settings = asyncio.run(indexed(tmp_path))
    config = config_file(tmp_path, settings)
    target = tmp_path / "second"
    run = CliRunner().invoke(
        main,
        ["--config", str(config), "store", "migrate", "--to", f"edge:{target}", "--batch", "2", "--json"],
    )
    assert run.exit_code == 0, run.output
    report = json.loads(run.output)
    before = asyncio.run(everything(settings))
    assert report["copied"] == report["source_points"] == report["target_points"] == len(before) >= 5
    after = asyncio.run(everything(settings, path=str(target)))

    async def identities() -> tuple[str | None, str | None]:
        source, copy = open_store(settings), open_store(settings, path=str(target))
        try:
            return await source.embedder(), await copy.embedder()
        finally:
            await source.aclose()
            await copy.aclose()

    recorded, copied = asyncio.run(identities())
    assert recorded is not None and copied == recorded  # the copy names the embedder that built it
    assert after.keys() == before.keys()
    for pid, point in before.items():
        copy = after[pid]
        assert copy.payload == point.payload
        assert copy.sparse == point.sparse
        assert copy.dense == pytest.approx(point.dense, abs=1e-6)
    # The copy answers like the original, ACL filter included.
    moved = settings.model_copy(update={"store": settings.store.model_copy(update={"path": target})})

    async def search(store_settings: Settings) -> list[str]:
        retriever = DocsRetriever(store_settings, embedder=HashEmbedder())
        try:
            hits = await retriever.search("vacation days", acl=frozenset({"public"}), k=3)
            assert all(h.source == "public" for h in hits)
            return [h.chunk_id for h in hits]
        finally:
            await retriever.aclose()

    original = asyncio.run(search(settings))
    assert original and asyncio.run(search(moved)) == original
    # Migrating onto itself is refused.
    itself = CliRunner().invoke(
        main, ["--config", str(config), "store", "migrate", "--to", f"edge:{settings.store_path}"]
    )
    assert itself.exit_code == 1 and "is the store itself" in itself.output


class FailingAfter:
    """A target store that fails (like a dropped connection) on its n-th upsert."""

    def __init__(self, inner: Any, fail_on: int) -> None:
        self.inner, self.fail_on, self.calls = inner, fail_on, 0
        self.location, self.kind, self.collection = inner.location, inner.kind, inner.collection

    async def upsert(self, chunks: Any) -> None:
        self.calls += 1
        if self.calls == self.fail_on:
            raise RetrievalError("connection reset")
        await self.inner.upsert(chunks)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


async def test_an_interrupted_migration_resumes_after_the_last_batch(tmp_path: Path) -> None:
    settings = await indexed(tmp_path)
    checkpoint = tmp_path / "migrate.json"
    target_dir = tmp_path / "second"
    source = open_store(settings)
    target = FailingAfter(open_store(settings, path=str(target_dir)), fail_on=3)
    try:
        with pytest.raises(RetrievalError, match="connection reset"):
            await migrate(source, target, checkpoint, batch=2)  # type: ignore[arg-type]
        assert json.loads(checkpoint.read_text())["copied"] == 4
        total = await source.count()
        report = await migrate(source, target.inner, checkpoint, batch=2)
        assert report.resumed_from == 4 and report.copied == total - 4
        assert report.target_points == total and not checkpoint.exists()
    finally:
        await source.aclose()
        await target.inner.aclose()


def test_store_info_and_doctor_name_the_store_and_its_size(tmp_path: Path) -> None:
    settings = asyncio.run(indexed(tmp_path))
    config = config_file(tmp_path, settings)
    out = CliRunner().invoke(main, ["--config", str(config), "store", "info", "--json"])
    assert out.exit_code == 0, out.output
    info = json.loads(out.output)
    assert info["kind"] == "edge" and info["points"] >= 5 and info["fine"] is True
    assert info["location"].endswith("hearth_docs") and info["disk_bytes"] > 0
    from server.cli.doctor_cmd import _store

    check = _store(settings)
    assert check.ok and check.detail.startswith(
        f"edge at {settings.store_path / 'hearth_docs'}: {info['points']} chunks"
    )
    assert "1,000,000" in check.detail
