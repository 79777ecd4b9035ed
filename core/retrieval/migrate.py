"""Copy an index from one store to another (`hearth store migrate --to URL`), in batches, resumably.

Points keep their ids, vectors and payload, so the copy is the same index and the sync state in
the state database stays valid for it. Each batch is written with an upsert (idempotent) and
then recorded in a checkpoint file next to the source store; a copy that is interrupted resumes
after the last recorded batch (re-writing at most one). The checkpoint names its target, so a
copy to somewhere else starts over::

    report = await migrate(open_store(settings), open_store(settings, url=URL), checkpoint)

Also what `hearth doctor` says about a store's size (:func:`size_advice`).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from core.errors import RetrievalError
from core.retrieval.store import ChunkStore, StoreInfo

# Chunks up to which one machine's embedded store is comfortable (see README, "How far the
# embedded store goes"); local mode scans every point, so its limit is much lower.
EDGE_COMFORTABLE = 1_000_000
LOCAL_COMFORTABLE = 20_000


@dataclass
class MigrateReport:
    """What a migration did."""

    source: str
    target: str
    copied: int
    resumed_from: int
    source_points: int
    target_points: int
    seconds: float


def _load(checkpoint: Path, target: str) -> tuple[str | None, int]:
    try:
        data = json.loads(checkpoint.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None, 0
    if not isinstance(data, dict) or data.get("target") != target:
        return None, 0
    offset = data.get("offset")
    copied = data.get("copied")
    return (str(offset) if offset else None), (int(copied) if isinstance(copied, int) else 0)


def _save(checkpoint: Path, target: str, offset: str | None, copied: int) -> None:
    tmp = checkpoint.with_suffix(".tmp")
    tmp.write_text(json.dumps({"target": target, "offset": offset, "copied": copied}), encoding="utf-8")
    os.replace(tmp, checkpoint)


async def migrate(
    source: ChunkStore,
    target: ChunkStore,
    checkpoint: Path,
    *,
    batch: int = 256,
    progress: Callable[[int, int], None] | None = None,
) -> MigrateReport:
    """Copy every point of ``source`` into ``target``; ``progress(copied, total)`` after each batch."""
    started = time.perf_counter()
    if source.location == target.location:
        raise RetrievalError(f"The migration target {target.location} is the store itself.")
    dimension = await source.dimension()
    if dimension is None:
        raise RetrievalError(f"There is no index at {source.location} to migrate — run 'hearth index' first.")
    # The copy records the same embedder identity, so searching it checks queries as the original does.
    await target.ensure(dimension, await source.embedder())
    total = await source.count()
    offset, copied = _load(checkpoint, target.location)
    resumed = copied
    if progress:
        progress(copied, total)
    while True:
        points, after = await source.scroll(offset, batch)
        await target.upsert(points)
        copied += len(points)
        _save(checkpoint, target.location, after, copied)
        if progress:
            progress(min(copied, total), total)
        if after is None:
            break
        offset = after
    await target.commit()
    target_points = await target.count()
    if target_points < total:
        raise RetrievalError(
            f"The target {target.location} holds {target_points} points after the copy, the source {total} — "
            "run the migration again (it resumes)."
        )
    await asyncio.to_thread(checkpoint.unlink, missing_ok=True)
    return MigrateReport(
        source.location,
        target.location,
        copied - resumed,
        resumed,
        total,
        target_points,
        time.perf_counter() - started,
    )


def size_advice(info: StoreInfo) -> tuple[bool, str]:
    """(fine, sentence) about a store's size: when the README says to move to a Qdrant server."""
    if info.kind == "server":
        return True, "a Qdrant server: scale it with Qdrant's own sharding and replication"
    limit = LOCAL_COMFORTABLE if info.kind == "local" else EDGE_COMFORTABLE
    if info.points > limit:
        return False, (
            f"{info.points} chunks is past what the {info.kind} store handles comfortably on one machine "
            f"(about {limit:,}) — move to a Qdrant server: 'hearth store migrate --to URL', then set store.url"
        )
    return (
        True,
        f"fine on one machine up to about {limit:,} chunks; more replicas or more chunks: a Qdrant server",
    )
