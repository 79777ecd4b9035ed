"""The state database: concurrent first use, event de-duplication across instances."""

from __future__ import annotations

import asyncio
from pathlib import Path

from core.db import Database


async def test_concurrent_first_events_create_the_table_once_and_dedupe(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'state.db'}")
    results = await asyncio.gather(*(db.first_time("slack", f"E{i % 5}") for i in range(20)))
    assert sum(results) == 5
    await db.aclose()


async def test_a_restarted_process_still_knows_seen_events(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    first = Database(url)
    assert await first.first_time("dingtalk", "msg-1")
    await first.aclose()
    second = Database(url)
    assert not await second.first_time("dingtalk", "msg-1")
    assert await second.first_time("slack", "msg-1"), "ids are per surface"
    await second.aclose()
