"""The ``edge`` backend: Qdrant Edge (``qdrant-edge-py``), the Qdrant engine inside this process.

The shard lives at ``<store.path>/<collection>/`` (Edge's own ``edge_config.json``, ``wal/`` and
``segments/``), with ``<collection>.hearth.json`` beside it naming the layout. Edge keeps its
write-ahead log on, so a process killed mid-write leaves a shard that loads and replays; the WAL
is also a lock, so a second process opening the same shard fails (translated here into a
sentence naming the fix) instead of corrupting it. One shard is shared, reference-counted, by
every store object of a process; calls into Edge run in worker threads, off the event loop.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar
from uuid import UUID

import qdrant_edge as qe

from core.errors import RetrievalError
from core.retrieval.config import StoreSettings
from core.retrieval.embedders import check_identity
from core.retrieval.store import (
    DENSE,
    INDEXED_FIELDS,
    LAYOUT,
    PAGE,
    SPARSE,
    TITLE,
    Field,
    Kind,
    Mode,
    ScoredChunk,
    Sparse,
    StoredChunk,
    StoreInfo,
    hybrid_depth,
    stored_chunk,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

REBUILD = "run 'hearth index --rebuild'"
IN_USE = (
    "The vector store at {path} is in use by another Hearth process. While 'hearth serve' runs, "
    "'hearth index' and 'hearth search' go through it; otherwise stop the other process, or run "
    "Qdrant as a server and set store.url."
)
# Points written since the last optimize() before commit() rebuilds segments and HNSW graphs.
OPTIMIZE_AFTER = 1000


class _Handle:
    """One shard directory's engine in this process, shared by every store object on it."""

    def __init__(self) -> None:
        self.shard: qe.EdgeShard | None = None
        self.refs = 0
        self.lock = threading.Lock()
        # Whether anything was written since the last flush: a shard only read needs none at close.
        self.dirty = False


_handles: dict[str, _Handle] = {}
_handles_lock = threading.Lock()


def _is_lock_error(exc: Exception) -> bool:
    text = str(exc)
    return "WouldBlock" in text or "Resource temporarily unavailable" in text


def _filter(acl: frozenset[str] | None, *conditions: qe.FieldCondition) -> qe.Filter | None:
    must: list[qe.FieldCondition] = list(conditions)
    if acl is not None:
        must.append(qe.FieldCondition(key="acl", match=qe.MatchAny(any=sorted(acl))))
    return qe.Filter(must=list(must)) if must else None


def _match(key: str, value: str) -> qe.FieldCondition:
    return qe.FieldCondition(key=key, match=qe.MatchValue(value=value))


def _sparse(vector: Sparse) -> qe.SparseVector:
    return qe.SparseVector(indices=list(vector[0]), values=list(vector[1]))


def _id(value: object) -> str:
    return str(value)  # Edge hands back uuid.UUID for the string ids Hearth writes


class EdgeStore:
    """A chunk store on one Qdrant Edge shard (see :class:`core.retrieval.store.ChunkStore`)."""

    kind: Kind = "edge"

    def __init__(self, settings: StoreSettings, path: str) -> None:
        self.settings = settings
        self.collection = settings.collection
        self.root = Path(path)
        self.shard_dir = self.root / self.collection
        self.marker = self.root / f"{self.collection}.hearth.json"
        key = str(self.shard_dir.resolve())
        with _handles_lock:
            self._handle = _handles.setdefault(key, _Handle())
            self._handle.refs += 1
        self._key = key
        self._closed = False
        self._written = 0
        self._new_embedder: str | None = None

    @property
    def location(self) -> str:
        """The shard directory."""
        return str(self.shard_dir)

    # --- opening -----------------------------------------------------------------------------
    def _older_layout(self) -> str | None:
        """Why the files at the store path are not a shard this version can use (None: they are)."""
        if (self.root / "meta.json").exists() and (self.root / "collection" / self.collection).exists():
            return "was written by qdrant-client's local mode (an older Hearth)"
        if not (self.shard_dir / "edge_config.json").exists():
            return None
        try:
            layout = json.loads(self.marker.read_text(encoding="utf-8")).get("layout")
        except (OSError, ValueError, AttributeError):
            layout = None
        if layout != LAYOUT:
            return f"has layout {layout or 'unknown'}, this Hearth writes layout {LAYOUT}"
        return None

    def _stored_dimension(self) -> int | None:
        try:
            config = json.loads((self.shard_dir / "edge_config.json").read_text(encoding="utf-8"))
            return int(config["vectors"][DENSE]["size"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _check_layout(self) -> None:
        why = self._older_layout()
        if why is not None:
            raise RetrievalError(f"The vector store at {self.root} {why} — {REBUILD} to re-index into it.")

    def _shard_now(self, create_dimension: int | None) -> qe.EdgeShard | None:
        """The process's shard for this directory: loaded, created (given a dimension) or None."""
        handle = self._handle
        with handle.lock:
            if handle.shard is None:
                self._check_layout()
                exists = (self.shard_dir / "edge_config.json").exists()
                if not exists and create_dimension is None:
                    return None
                handle.shard = self._load() if exists else self._create(create_dimension or 0)
            return handle.shard

    def _config(self, dimension: int) -> qe.EdgeConfig:
        return qe.EdgeConfig(
            vectors={
                DENSE: qe.EdgeVectorParams(size=dimension, distance=qe.Distance.Cosine),
                PAGE: qe.EdgeVectorParams(size=dimension, distance=qe.Distance.Cosine),
            },
            sparse_vectors={
                SPARSE: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf),
                TITLE: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf),
            },
            wal_enabled=True,
        )

    def _load(self) -> qe.EdgeShard:
        try:
            return qe.EdgeShard.load(str(self.shard_dir))
        except Exception as exc:  # noqa: BLE001 - Edge raises plain Exception
            if _is_lock_error(exc):
                raise RetrievalError(IN_USE.format(path=self.root)) from exc
            raise RetrievalError(
                f"The vector store at {self.shard_dir} cannot be opened ({exc}) — {REBUILD}."
            ) from exc

    def _create(self, dimension: int) -> qe.EdgeShard:
        self.root.mkdir(parents=True, exist_ok=True)
        # The marker first: a shard without one (a crash in between) would read as an unknown layout.
        self.marker.write_text(
            json.dumps(
                {
                    "layout": LAYOUT,
                    "dense": DENSE,
                    "sparse": SPARSE,
                    "title": TITLE,
                    "page": PAGE,
                    "bm25": "qdrant",
                    "embedder": self._new_embedder,
                }
            ),
            encoding="utf-8",
        )
        try:
            shard = qe.EdgeShard.create(str(self.shard_dir), self._config(dimension))
            for name in INDEXED_FIELDS:
                shard.update(qe.UpdateOperation.create_field_index(name, qe.PayloadSchemaType.Keyword))
            shard.flush()
        except Exception as exc:  # noqa: BLE001
            if _is_lock_error(exc):
                raise RetrievalError(IN_USE.format(path=self.root)) from exc
            raise RetrievalError(f"Cannot create the vector store at {self.shard_dir}: {exc}") from exc
        return shard

    async def _open(self, create_dimension: int | None = None) -> qe.EdgeShard | None:
        shard = self._handle.shard
        return shard if shard is not None else await asyncio.to_thread(self._shard_now, create_dimension)

    async def _call(self, fn: Callable[[qe.EdgeShard], T]) -> T:
        shard = await self._open()
        if shard is None:
            raise RetrievalError(
                f"The document index at {self.shard_dir} does not exist yet — run 'hearth index'."
            )

        def run() -> T:
            try:
                return fn(shard)
            except RetrievalError:
                raise
            except Exception as exc:  # noqa: BLE001 - Edge raises plain Exception
                raise RetrievalError(f"The vector store at {self.shard_dir} failed: {exc}") from exc

        return await asyncio.to_thread(run)

    async def _update(self, operation: qe.UpdateOperation) -> None:
        """Apply a write (Edge logs it to the WAL first); the shard then needs a flush at close."""
        self._handle.dirty = True
        await self._call(lambda s: s.update(operation))

    # --- the ChunkStore interface --------------------------------------------------------------
    async def exists(self) -> bool:
        """Whether the shard exists (an older layout raises RetrievalError naming the rebuild)."""
        if self._handle.shard is not None:
            return True
        self._check_layout()
        return (self.shard_dir / "edge_config.json").exists()

    async def dimension(self) -> int | None:
        """The shard's dense vector size."""
        return self._stored_dimension() if await self.exists() else None

    async def ensure(self, dimension: int, embedder: str | None = None) -> None:
        """Create the shard if needed (recording ``embedder``); refuse one of another vector size or embedder."""
        if await self.exists():
            size = self._stored_dimension()
            if size != dimension:
                raise RetrievalError(
                    f"The vector store at {self.shard_dir} holds {size}-dimensional vectors but the embedder "
                    f"makes {dimension} — {REBUILD} after changing the embedder."
                )
            if embedder is not None:
                check_identity(await self.embedder(), embedder, self.location)
        self._new_embedder = embedder
        await self._open(create_dimension=dimension)

    async def embedder(self) -> str | None:
        """The embedder identity recorded in the shard's marker when it was created."""
        try:
            recorded = json.loads(self.marker.read_text(encoding="utf-8")).get("embedder")
        except (OSError, ValueError, AttributeError):
            return None
        return str(recorded) if recorded else None

    async def drop(self) -> None:
        """Delete the shard, its marker and any older-layout files of this collection."""

        def remove() -> None:
            with self._handle.lock:
                shard, self._handle.shard = self._handle.shard, None
                if shard is not None:
                    shard.close()
                shutil.rmtree(self.shard_dir, ignore_errors=True)
                self.marker.unlink(missing_ok=True)
                legacy = self.root / "collection" / self.collection
                if legacy.exists():
                    shutil.rmtree(legacy, ignore_errors=True)
                    if not any((self.root / "collection").iterdir()):
                        (self.root / "collection").rmdir()
                        for name in ("meta.json", ".lock"):
                            (self.root / name).unlink(missing_ok=True)

        await asyncio.to_thread(remove)

    async def upsert(self, chunks: Sequence[StoredChunk]) -> None:
        """Write chunks (idempotent: same ids overwrite)."""
        if not chunks:
            return
        points = []
        for c in chunks:
            vectors: dict[str, qe.NamedVector] = {
                DENSE: list(c.dense),
                SPARSE: _sparse(c.sparse),
                TITLE: _sparse(c.title_sparse),
            }
            if c.page:
                vectors[PAGE] = list(c.page)
            points.append(qe.Point(c.id, vectors, dict(c.payload)))
        await self._update(qe.UpdateOperation.upsert_points(points))
        self._written += len(points)

    async def delete_doc(self, doc_id: str, keep_version: str | None = None) -> None:
        """Delete a document's chunks, or only those not of ``keep_version``."""
        if not await self.exists():
            return
        flt = qe.Filter(
            must=[_match("doc_id", doc_id)],
            must_not=[_match("version", keep_version)] if keep_version else None,
        )
        await self._update(qe.UpdateOperation.delete_points_by_filter(flt))

    async def delete_source(self, source: str) -> None:
        """Delete every chunk of a source."""
        if not await self.exists():
            return
        flt = qe.Filter(must=[_match("source", source)])
        await self._update(qe.UpdateOperation.delete_points_by_filter(flt))

    async def set_acl(self, source: str, acl: list[str]) -> None:
        """Re-label every chunk of a source (no re-embedding)."""
        if not await self.exists():
            return
        flt = qe.Filter(must=[_match("source", source)])
        await self._update(qe.UpdateOperation.set_payload_by_filter(flt, {"acl": list(acl)}))

    async def count(self, source: str | None = None) -> int:
        """Chunks stored (in one source)."""
        if not await self.exists():
            return 0
        flt = qe.Filter(must=[_match("source", source)]) if source else None
        return await self._call(lambda s: s.count(qe.CountRequest(exact=True, filter=flt)))

    async def search(
        self,
        mode: Mode,
        *,
        dense: list[float] | None,
        sparse: Sparse | None,
        acl: frozenset[str] | None,
        limit: int,
        min_similarity: float = 0.0,
        field: Field = "text",
    ) -> list[ScoredChunk]:
        """Top chunks by dense, BM25 or both fused with RRF; the ACL filter is inside every (pre)fetch."""
        if acl is not None and not acl:
            return []
        if not await self.exists():
            log.warning("the document index at %s is empty — run 'hearth index'", self.shard_dir)
            return []
        if dense is not None:
            size = self._stored_dimension()
            if size is not None and len(dense) != size:
                raise RetrievalError(
                    f"The vector store at {self.shard_dir} holds {size}-dimensional vectors but the embedder "
                    f"makes {len(dense)} — {REBUILD} after changing the embedder."
                )
        flt = _filter(acl)
        # ACORN: filtered HNSW search also explores neighbours' neighbours, so a restrictive ACL
        # does not cut the graph into pieces (recall@10 0.978-0.99 -> 1.0 at 25k, +0.07 ms).
        params = qe.SearchParams(acorn=qe.AcornSearchParams(enable=True)) if flt is not None else None
        sparse_ok = sparse is not None and bool(sparse[0])
        threshold = min_similarity or None
        if mode == "dense":
            if dense is None:
                return []
            request = qe.QueryRequest(
                limit=limit,
                query=qe.Query.Nearest(dense, using=PAGE if field == "title" else DENSE),
                filter=flt,
                score_threshold=threshold,
                params=params,
                with_payload=True,
            )
        elif mode == "bm25":
            if not sparse_ok or sparse is None:
                return []
            request = qe.QueryRequest(
                limit=limit,
                query=qe.Query.Nearest(_sparse(sparse), using=TITLE if field == "title" else SPARSE),
                filter=flt,
                with_payload=True,
            )
        else:
            depth = hybrid_depth(limit)
            prefetches = []
            if dense is not None:
                prefetches.append(
                    qe.Prefetch(
                        limit=depth,
                        query=qe.Query.Nearest(dense, using=DENSE),
                        filter=flt,
                        score_threshold=threshold,
                        params=params,
                    )
                )
            if sparse_ok and sparse is not None:
                prefetches.append(
                    qe.Prefetch(
                        limit=depth, query=qe.Query.Nearest(_sparse(sparse), using=SPARSE), filter=flt
                    )
                )
            if not prefetches:
                return []
            request = qe.QueryRequest(
                limit=limit,
                prefetches=prefetches,
                query=qe.Fusion.Rrf(k=2),  # type: ignore[arg-type]  # the stub lists Fusion, not its Rrf
                filter=flt,
                with_payload=True,
            )
        points = await self._call(lambda s: s.query(request))
        return [ScoredChunk(_id(p.id), float(p.score), dict(p.payload or {})) for p in points]

    async def scroll(self, offset: str | None, limit: int) -> tuple[list[StoredChunk], str | None]:
        """A page of points with vectors and payload, in id order, and the next page's offset."""
        if not await self.exists():
            return [], None
        request = qe.ScrollRequest(
            offset=UUID(offset) if offset else None, limit=limit, with_payload=True, with_vector=True
        )
        records, after = await self._call(lambda s: s.scroll(request))
        out = []
        for r in records:
            out.append(stored_chunk(_id(r.id), r.vector, r.payload))
        return out, (_id(after) if after is not None else None)

    async def commit(self) -> None:
        """Flush to disk; after many writes, also merge segments and build the HNSW and payload indexes."""
        if self._handle.shard is None:
            return
        optimize = self._written >= OPTIMIZE_AFTER
        self._written = 0

        def run(shard: qe.EdgeShard) -> None:
            self._handle.dirty = False  # before the flush: a write racing it marks the shard again
            shard.flush()
            if optimize:
                shard.optimize()
                shard.flush()

        await self._call(run)

    async def info(self) -> StoreInfo:
        """Kind, shard directory, point count, vector size and bytes on disk."""
        exists = await self.exists()
        points = await self._call(lambda s: s.info().points_count) if exists else 0

        def size() -> int:  # allocated blocks: Edge preallocates sparse mmap files
            return sum(f.stat().st_blocks * 512 for f in self.shard_dir.rglob("*") if f.is_file())

        disk = await asyncio.to_thread(size) if exists else 0
        return StoreInfo(self.kind, self.location, points, self._stored_dimension(), disk)

    async def aclose(self) -> None:
        """Release this store's share of the shard (the last one flushes, if written to, and closes it).

        A shard only read since its last flush is closed without one: a flush there costs a cold
        `hearth search` 0.1-0.2 s and persists nothing, since every write reaches Edge's WAL before
        it is applied and the WAL keeps what no flush has made durable (a write of a killed process,
        replayed when this one loaded the shard) for the next load to replay again.
        """
        if self._closed:
            return
        self._closed = True
        handle = self._handle
        with _handles_lock:
            handle.refs -= 1
            last = handle.refs <= 0
            if last:
                _handles.pop(self._key, None)
        if last and handle.shard is not None:

            def finish() -> None:
                with handle.lock:
                    shard, handle.shard = handle.shard, None
                    if shard is not None:
                        if handle.dirty:
                            shard.flush()
                        shard.close()

            await asyncio.to_thread(finish)
