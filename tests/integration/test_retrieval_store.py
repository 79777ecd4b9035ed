"""The embedded store (Qdrant Edge) itself: Chinese keywords, refusals that name the fix, two processes, kill -9."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from core.config import Settings
from core.errors import RetrievalError
from core.retrieval.search import DocsRetriever
from core.retrieval.store import StoredChunk
from core.retrieval.stores import open_store
from core.retrieval.sync import Indexer
from tests.fixtures.core import make_settings
from tests.fixtures.retrieval import HashEmbedder

ROOT = Path(__file__).resolve().parents[2]

CHINESE = {
    "leave.md": "# 休假制度\n\n新员工每年有二十天年假。请在 HR 门户中申请休假，经理会在三天内审批。\n",
    "expenses.md": "# 报销\n\n请在三十天内通过 Expensify 提交发票。酒店每晚最多报销 180 欧元。\n",
    "deploys.md": "# 发布\n\n在 #deploys 频道运行 /deploy api rollback 回滚到上一个镜像。\n",
}


def chinese_settings(tmp_path: Path, language: str = "auto") -> Settings:
    folder = tmp_path / "zh"
    folder.mkdir()
    for name, text in CHINESE.items():
        (folder / name).write_text(text, encoding="utf-8")
    source = {"name": "zh", "type": "files", "path": str(folder), "acl": ["public"], "language": language}
    return make_settings(tmp_path, sources=[source])


async def index(settings: Settings) -> None:
    indexer = Indexer(settings, embedder=HashEmbedder())
    try:
        await indexer.sync()
    finally:
        await indexer.aclose()


@pytest.mark.parametrize("language", ["auto", "chinese"])
async def test_chinese_documents_are_found_by_keyword(tmp_path: Path, language: str) -> None:
    settings = chinese_settings(tmp_path, language)
    await index(settings)
    retriever = DocsRetriever(settings, embedder=HashEmbedder())
    try:
        for query, doc in [
            ("年假", "zh:leave.md"),
            ("怎么申请休假？", "zh:leave.md"),
            ("酒店报销", "zh:expenses.md"),
        ]:
            hits = await retriever.search(query, acl=frozenset({"public"}), k=3, mode="bm25")
            assert hits and hits[0].doc_id == doc, (query, [h.doc_id for h in hits])
        # Latin words and numbers inside Chinese text still match.
        assert (await retriever.search("rollback", acl=None, k=1, mode="bm25"))[0].doc_id == "zh:deploys.md"
        assert await retriever.search("天气预报", acl=None, k=3, mode="bm25") == []
        assert await retriever.search("年假", acl=frozenset({"group:other"}), k=3, mode="bm25") == []
    finally:
        await retriever.aclose()


async def test_a_store_of_another_vector_size_or_an_older_layout_names_the_rebuild(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    store = open_store(settings)
    try:
        await store.ensure(64)
        await store.upsert(
            [StoredChunk("00000000-0000-0000-0000-000000000001", [1.0] * 64, ([1], [1.0]), {})]
        )
        with pytest.raises(RetrievalError, match=r"holds 64-dimensional vectors .* 'hearth index --rebuild'"):
            await store.ensure(384)
        with pytest.raises(RetrievalError, match="hearth index --rebuild"):
            await store.search("dense", dense=[1.0] * 384, sparse=None, acl=None, limit=3)
    finally:
        await store.aclose()
    # An index written by an older Hearth (qdrant-client local mode) in the same directory.
    old = make_settings(tmp_path / "old")
    old.store_path.joinpath("collection", old.store.collection).mkdir(parents=True)
    old.store_path.joinpath("meta.json").write_text(json.dumps({"collections": {}}))
    store = open_store(old)
    try:
        with pytest.raises(RetrievalError, match=r"local mode .* 'hearth index --rebuild'"):
            await store.exists()
        await store.drop()  # what --rebuild does: the old files go, a new shard can be made
        assert not old.store_path.joinpath("meta.json").exists()
        await store.ensure(64)
        assert await store.count() == 0
    finally:
        await store.aclose()
    # A shard whose layout marker is from another version.
    marker = settings.store_path / f"{settings.store.collection}.hearth.json"
    marker.write_text(json.dumps({"layout": 1}))
    store = open_store(settings)
    try:
        with pytest.raises(RetrievalError, match=r"layout 1, .* 'hearth index --rebuild'"):
            await store.count()
    finally:
        await store.aclose()


HOLDER = textwrap.dedent(
    """
    import asyncio, sys
    from core.config import Settings
    from core.retrieval.store import StoredChunk
    from core.retrieval.stores import open_store

    async def main():
        store = open_store(Settings(home=sys.argv[1]))
        await store.ensure(8)
        n = int(sys.argv[2])
        for i in range(n):
            await store.upsert([StoredChunk(f"00000000-0000-0000-0000-{i:012d}", [1.0] * 8, ([i], [1.0]),
                                            {"acl": ["public"], "doc_id": f"d{i}", "source": "s"})])
            if i == 0:
                print("writing", flush=True)
        print("holding", flush=True)
        sys.stdin.readline()
        await store.aclose()

    asyncio.run(main())
    """
)


def holder(home: Path, points: int) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(home), str(points)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )


async def test_a_second_process_gets_a_clear_error_and_nothing_is_corrupted(tmp_path: Path) -> None:
    home = tmp_path / "home"
    proc = holder(home, 3)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "writing"
        assert proc.stdout.readline().strip() == "holding"
        store = open_store(Settings(home=str(home)))
        try:
            with pytest.raises(RetrievalError, match=r"in use by another Hearth process.*'hearth serve'"):
                await store.count()
        finally:
            await store.aclose()
        assert proc.stdin is not None
        proc.stdin.write("\n")
        proc.stdin.flush()
        assert proc.wait(timeout=60) == 0
    finally:
        proc.kill()
    store = open_store(Settings(home=str(home)))
    try:
        assert await store.count() == 3
    finally:
        await store.aclose()


async def test_a_process_killed_mid_write_leaves_a_shard_that_loads(tmp_path: Path) -> None:
    home = tmp_path / "home"
    proc = holder(home, 100_000)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "writing"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        proc.kill()
    store = open_store(Settings(home=str(home)))
    try:
        written = await store.count()
        assert written >= 1  # what the WAL held is replayed, and the shard answers
        hits = await store.search("bm25", dense=None, sparse=([0], [1.0]), acl=frozenset({"public"}), limit=1)
        assert [h.payload["doc_id"] for h in hits] == ["d0"]
        await store.upsert([StoredChunk("00000000-0000-0000-0001-000000000000", [1.0] * 8, ([7], [1.0]), {})])
        assert await store.count() == written + 1
    finally:
        await store.aclose()
