"""A Qdrant Edge shard only read is closed without a flush, and no write is ever lost for it.

The risky case is a writer killed before any flush: its points live only in Edge's WAL. A reader
replays them at load and, closing without a flush, must leave them in the WAL for the next load;
a store that wrote still flushes at close.
"""

from __future__ import annotations

import signal
from pathlib import Path

from core.config import Settings
from core.retrieval.store import StoredChunk
from core.retrieval.store_edge import EdgeStore
from tests.integration.test_retrieval_store import holder


def _chunk(i: int) -> StoredChunk:
    return StoredChunk(f"00000000-0000-0000-0002-{i:012d}", [1.0] * 8, ([i], [1.0]), {"acl": ["public"]})


async def test_readers_close_without_a_flush_and_keep_a_killed_writers_points(tmp_path: Path) -> None:
    home = tmp_path / "home"
    proc = holder(home, 5)  # creates the shard, writes 5 points, never flushes them
    try:
        assert proc.stdout is not None
        assert [proc.stdout.readline().strip() for _ in range(2)] == ["writing", "holding"]
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        proc.kill()
    settings = Settings(home=str(home))

    def open_store(settings: Settings) -> EdgeStore:
        return EdgeStore(settings.store, str(settings.store_path))

    for _ in range(3):  # each reader replays the WAL and closes without flushing
        store = open_store(settings)
        assert await store.count() == 5
        assert not store._handle.dirty
        await store.aclose()

    writer = open_store(settings)
    await writer.upsert([_chunk(1)])
    assert writer._handle.dirty
    await writer.commit()
    assert not writer._handle.dirty
    await writer.upsert([_chunk(2)])  # written after the last commit: the close flushes it
    reader = open_store(settings)  # the same shard, shared in this process
    assert await reader.count() == 7
    await reader.aclose()
    await writer.aclose()
    store = open_store(settings)
    try:
        assert await store.count() == 7
    finally:
        await store.aclose()
