"""The chunk store: one Qdrant collection with a named dense vector and a BM25 sparse vector.

Local mode (``store.path``) by default, a Qdrant server or cluster with ``store.url``. Local mode
allows one client per directory per process, so clients are shared and reference-counted here.
Access control is a payload filter applied inside every Qdrant query, never after it.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from qdrant_client import AsyncQdrantClient, models
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from core.errors import RetrievalError
from core.jsontypes import JsonObject
from core.retrieval.config import StoreSettings

log = logging.getLogger(__name__)

Mode = Literal["dense", "bm25", "hybrid"]
DENSE = "dense"
SPARSE = "bm25"
_NAMESPACE = uuid.UUID("6f1c7a52-43c4-4f0e-9d4e-6b1f0c8e2a11")
_FIELDS = ("acl", "doc_id", "source", "version")

_clients: dict[str, tuple[AsyncQdrantClient, int]] = {}
_clients_lock = threading.Lock()


def point_id(doc_id: str, content_hash: str, signature: str, index: int) -> str:
    """A deterministic point id, so re-running an interrupted sync overwrites instead of duplicating."""
    return str(uuid.uuid5(_NAMESPACE, f"{doc_id}\x00{content_hash}\x00{signature}\x00{index}"))


@dataclass(frozen=True)
class StoredChunk:
    """A chunk ready to be written: vectors plus payload."""

    id: str
    dense: list[float]
    sparse: tuple[list[int], list[float]]
    payload: JsonObject


def acl_filter(acl: frozenset[str] | None, extra: Sequence[models.Condition] = ()) -> models.Filter | None:
    """The Qdrant filter for a reader holding ``acl`` (None: the operator, no ACL condition)."""
    must: list[models.Condition] = list(extra)
    if acl is not None:
        must.append(models.FieldCondition(key="acl", match=models.MatchAny(any=sorted(acl))))
    return models.Filter(must=must) if must else None


def _source_filter(source: str) -> models.Filter:
    return models.Filter(must=[models.FieldCondition(key="source", match=models.MatchValue(value=source))])


class ChunkStore:
    """Writes and hybrid-searches chunks in one collection."""

    def __init__(self, settings: StoreSettings, path: str) -> None:
        self.settings = settings
        self.collection = settings.collection
        self._key = settings.url or f"path:{path}"
        self._path = path
        self._client: AsyncQdrantClient | None = None
        self._ready = False

    @property
    def remote(self) -> bool:
        """True for a Qdrant server (payload indexes apply there, not in local mode)."""
        return self.settings.url is not None

    async def client(self) -> AsyncQdrantClient:
        """The shared client for this store (opened on first use)."""
        if self._client is None:
            self._client = await asyncio.to_thread(self._acquire)
        return self._client

    def _acquire(self) -> AsyncQdrantClient:
        with _clients_lock:
            client, refs = _clients.get(self._key, (None, 0))
            if client is None:
                client = self._open()
            _clients[self._key] = (client, refs + 1)
            return client

    def _open(self) -> AsyncQdrantClient:
        try:
            if self.settings.url:
                key = self.settings.api_key.get_secret_value() if self.settings.api_key else None
                return AsyncQdrantClient(url=self.settings.url, api_key=key, timeout=30)
            from pathlib import Path

            Path(self._path).mkdir(parents=True, exist_ok=True)
            return AsyncQdrantClient(path=self._path)
        except RuntimeError as exc:  # portalocker: another process holds the directory
            raise RetrievalError(
                f"The vector store at {self._path} is in use by another Hearth process — stop it, "
                "or run Qdrant as a server and set store.url."
            ) from exc

    async def exists(self) -> bool:
        """Whether the collection exists."""
        try:
            return await (await self.client()).collection_exists(self.collection)
        except (ResponseHandlingException, UnexpectedResponse, OSError) as exc:
            raise RetrievalError(f"Qdrant at {self.settings.url} is unreachable: {exc}") from exc

    async def ensure(self, dimension: int) -> None:
        """Create the collection (dense + sparse vectors, payload indexes) if needed; check its size."""
        if self._ready:
            return
        client = await self.client()
        if await self.exists():
            info = await client.get_collection(self.collection)
            vectors = info.config.params.vectors
            size = vectors[DENSE].size if isinstance(vectors, dict) and DENSE in vectors else None
            if size != dimension:
                raise RetrievalError(
                    f"The collection '{self.collection}' holds {size}-dimensional vectors but the embedder "
                    f"makes {dimension} — run 'hearth index --rebuild' after changing the embedder."
                )
        else:
            await client.create_collection(
                self.collection,
                vectors_config={DENSE: models.VectorParams(size=dimension, distance=models.Distance.COSINE)},
                sparse_vectors_config={SPARSE: models.SparseVectorParams(modifier=models.Modifier.IDF)},
            )
            if self.remote:  # local mode ignores payload indexes (and warns)
                for name in _FIELDS:
                    await client.create_payload_index(self.collection, name, models.PayloadSchemaType.KEYWORD)
        self._ready = True

    async def drop(self) -> None:
        """Delete the collection and everything in it."""
        client = await self.client()
        if await client.collection_exists(self.collection):
            await client.delete_collection(self.collection)
        self._ready = False

    async def upsert(self, chunks: Sequence[StoredChunk]) -> None:
        """Write chunks (idempotent: same ids overwrite)."""
        if not chunks:
            return
        points = [
            models.PointStruct(
                id=c.id,
                vector={DENSE: c.dense, SPARSE: models.SparseVector(indices=c.sparse[0], values=c.sparse[1])},
                payload=c.payload,
            )
            for c in chunks
        ]
        await (await self.client()).upsert(self.collection, points=points, wait=True)

    async def delete_doc(self, doc_id: str, keep_version: str | None = None) -> None:
        """Delete a document's chunks, or only those not of ``keep_version`` (stale versions)."""
        cond = models.Filter(
            must=[models.FieldCondition(key="doc_id", match=models.MatchValue(value=doc_id))],
            must_not=[models.FieldCondition(key="version", match=models.MatchValue(value=keep_version))]
            if keep_version
            else None,
        )
        await (await self.client()).delete(
            self.collection, points_selector=models.FilterSelector(filter=cond), wait=True
        )

    async def delete_source(self, source: str) -> None:
        """Delete every chunk of a source."""
        if not await self.exists():
            return
        cond = _source_filter(source)
        await (await self.client()).delete(
            self.collection, points_selector=models.FilterSelector(filter=cond), wait=True
        )

    async def set_acl(self, source: str, acl: list[str]) -> None:
        """Re-label every chunk of a source with a new ACL (no re-embedding)."""
        if not await self.exists():
            return
        cond = _source_filter(source)
        await (await self.client()).set_payload(
            self.collection, payload={"acl": acl}, points=models.FilterSelector(filter=cond), wait=True
        )

    async def count(self, source: str | None = None) -> int:
        """Chunks stored (in one source)."""
        if not await self.exists():
            return 0
        cond = None
        if source:
            cond = _source_filter(source)
        return (await (await self.client()).count(self.collection, count_filter=cond, exact=True)).count

    async def search(
        self,
        mode: Mode,
        *,
        dense: list[float] | None,
        sparse: tuple[list[int], list[float]] | None,
        acl: frozenset[str] | None,
        limit: int,
        min_similarity: float = 0.0,
    ) -> list[models.ScoredPoint]:
        """Top chunks by dense, BM25 or both fused with RRF; the ACL filter is inside every (pre)fetch."""
        if acl is not None and not acl:
            return []
        if not await self.exists():
            log.warning("the document index '%s' is empty — run 'hearth index'", self.collection)
            return []
        client = await self.client()
        flt = acl_filter(acl)
        sparse_vec = models.SparseVector(indices=sparse[0], values=sparse[1]) if sparse else None
        sparse_ok = sparse_vec is not None and bool(sparse_vec.indices)
        threshold = min_similarity or None
        query: list[float] | models.SparseVector | models.FusionQuery | None
        using: str | None = None
        prefetch: list[models.Prefetch] | None = None
        if mode == "dense":
            query, using = dense, DENSE
        elif mode == "bm25":
            if not sparse_ok:
                return []
            query, using, threshold = sparse_vec, SPARSE, None
        else:
            depth = max(limit * 4, 20)
            prefetch = [
                models.Prefetch(query=dense, using=DENSE, filter=flt, limit=depth, score_threshold=threshold)
            ]
            if sparse_ok:
                prefetch.append(models.Prefetch(query=sparse_vec, using=SPARSE, filter=flt, limit=depth))
            query, threshold = models.FusionQuery(fusion=models.Fusion.RRF), None
        try:
            result = await client.query_points(
                self.collection,
                query=query,
                using=using,
                prefetch=prefetch,
                query_filter=flt,
                limit=limit,
                with_payload=True,
                score_threshold=threshold,
            )
        except (ResponseHandlingException, UnexpectedResponse, OSError) as exc:
            raise RetrievalError(f"The vector store query failed: {exc}") from exc
        return list(result.points)

    async def aclose(self) -> None:
        """Release this store's share of the client (the last one closes it)."""
        if self._client is None:
            return
        last: AsyncQdrantClient | None = None
        with _clients_lock:
            client, refs = _clients.get(self._key, (None, 0))
            if client is not None:
                if refs <= 1:
                    del _clients[self._key]
                    last = client
                else:
                    _clients[self._key] = (client, refs - 1)
        if last is not None:
            await last.close()
        self._client = None
        self._ready = False
