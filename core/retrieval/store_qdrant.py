"""The ``server`` backend: a Qdrant server or cluster through qdrant-client (``store.url``).

The same class drives qdrant-client's *local mode* (``store.backend: local``, a directory): a
pure-Python engine that scans every point, kept for comparison (bench/retrieval.py) and so the
server code path can be tested without a server binary. Local mode allows one client per
directory per process, so clients are shared and reference-counted here.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Sequence
from pathlib import Path

from qdrant_client import AsyncQdrantClient, models
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from core.errors import RetrievalError
from core.retrieval.config import StoreSettings
from core.retrieval.embedders import check_identity
from core.retrieval.store import (
    DENSE,
    INDEXED_FIELDS,
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
_FAILURES = (ResponseHandlingException, UnexpectedResponse, OSError)
# Collection metadata key holding the identity of the embedder that built it.
EMBEDDER_KEY = "hearth_embedder"

_clients: dict[str, tuple[AsyncQdrantClient, int]] = {}
_clients_lock = threading.Lock()


def acl_filter(acl: frozenset[str] | None, extra: Sequence[models.Condition] = ()) -> models.Filter | None:
    """The Qdrant filter for a reader holding ``acl`` (None: the operator, no ACL condition)."""
    must: list[models.Condition] = list(extra)
    if acl is not None:
        must.append(models.FieldCondition(key="acl", match=models.MatchAny(any=sorted(acl))))
    return models.Filter(must=must) if must else None


def _source_filter(source: str) -> models.Filter:
    return models.Filter(must=[models.FieldCondition(key="source", match=models.MatchValue(value=source))])


def _disk_bytes(root: Path) -> int:
    return sum(f.stat().st_blocks * 512 for f in root.rglob("*") if f.is_file()) if root.exists() else 0


def _sparse(vector: Sparse) -> models.SparseVector:
    return models.SparseVector(indices=list(vector[0]), values=list(vector[1]))


class QdrantStore:
    """A chunk store in one Qdrant collection (see :class:`core.retrieval.store.ChunkStore`)."""

    def __init__(self, settings: StoreSettings, *, url: str | None = None, path: str | None = None) -> None:
        if (url is None) == (path is None):
            raise ValueError("QdrantStore needs exactly one of url and path")
        self.settings = settings
        self.collection = settings.collection
        self.url = url
        self.path = path
        self.kind: Kind = "server" if url else "local"
        self._key = url or f"path:{path}"
        self._client: AsyncQdrantClient | None = None
        self._ready = False

    @property
    def location(self) -> str:
        """The server URL or the local-mode directory."""
        return self.url or str(self.path)

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
            if self.url:
                key = self.settings.api_key.get_secret_value() if self.settings.api_key else None
                return AsyncQdrantClient(url=self.url, api_key=key, timeout=30)
            if self.path == ":memory:":  # local mode without persistence (bench/retrieval.py)
                return AsyncQdrantClient(location=":memory:")
            Path(str(self.path)).mkdir(parents=True, exist_ok=True)
            return AsyncQdrantClient(path=str(self.path))
        except RuntimeError as exc:  # portalocker: another process holds the directory
            raise RetrievalError(
                f"The vector store at {self.path} is in use by another Hearth process — stop it, "
                "or run Qdrant as a server and set store.url."
            ) from exc

    async def exists(self) -> bool:
        """Whether the collection exists."""
        try:
            return await (await self.client()).collection_exists(self.collection)
        except _FAILURES as exc:
            raise RetrievalError(f"Qdrant at {self.location} is unreachable: {exc}") from exc

    async def dimension(self) -> int | None:
        """The collection's dense vector size."""
        if not await self.exists():
            return None
        info = await (await self.client()).get_collection(self.collection)
        vectors = info.config.params.vectors
        return vectors[DENSE].size if isinstance(vectors, dict) and DENSE in vectors else None

    async def ensure(self, dimension: int, embedder: str | None = None) -> None:
        """Create the collection (dense + sparse vectors, payload indexes) if needed; check its size and embedder."""
        if self._ready:
            return
        client = await self.client()
        if await self.exists():
            size = await self.dimension()
            if size != dimension:
                raise RetrievalError(
                    f"The collection '{self.collection}' holds {size}-dimensional vectors but the embedder "
                    f"makes {dimension} — run 'hearth index --rebuild' after changing the embedder."
                )
            info = await client.get_collection(self.collection)
            vectors = info.config.params.vectors
            if TITLE not in (info.config.params.sparse_vectors or {}) or not (
                isinstance(vectors, dict) and PAGE in vectors
            ):
                raise RetrievalError(
                    f"The collection '{self.collection}' has an older layout (no '{TITLE}'/'{PAGE}' vectors) — "
                    "run 'hearth index --rebuild' to re-index into it."
                )
            if embedder is not None:
                check_identity(await self.embedder(), embedder, self.location)
        else:
            await client.create_collection(
                self.collection,
                metadata={EMBEDDER_KEY: embedder} if embedder else None,
                vectors_config={
                    DENSE: models.VectorParams(size=dimension, distance=models.Distance.COSINE),
                    PAGE: models.VectorParams(size=dimension, distance=models.Distance.COSINE),
                },
                sparse_vectors_config={
                    SPARSE: models.SparseVectorParams(modifier=models.Modifier.IDF),
                    TITLE: models.SparseVectorParams(modifier=models.Modifier.IDF),
                },
            )
            if self.kind == "server":  # local mode ignores payload indexes (and warns)
                for name in INDEXED_FIELDS:
                    await client.create_payload_index(self.collection, name, models.PayloadSchemaType.KEYWORD)
        self._ready = True

    async def embedder(self) -> str | None:
        """The embedder identity recorded in the collection's metadata when it was created."""
        if not await self.exists():
            return None
        info = await (await self.client()).get_collection(self.collection)
        recorded = (info.config.metadata or {}).get(EMBEDDER_KEY)
        return str(recorded) if recorded else None

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
                vector={
                    DENSE: c.dense,
                    SPARSE: _sparse(c.sparse),
                    TITLE: _sparse(c.title_sparse),
                    **({PAGE: c.page} if c.page else {}),
                },
                payload=c.payload,
            )
            for c in chunks
        ]
        try:
            await (await self.client()).upsert(self.collection, points=points, wait=True)
        except _FAILURES as exc:
            raise RetrievalError(f"Writing to Qdrant at {self.location} failed: {exc}") from exc

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
        await (await self.client()).delete(
            self.collection, points_selector=models.FilterSelector(filter=_source_filter(source)), wait=True
        )

    async def set_acl(self, source: str, acl: list[str]) -> None:
        """Re-label every chunk of a source with a new ACL (no re-embedding)."""
        if not await self.exists():
            return
        await (await self.client()).set_payload(
            self.collection,
            payload={"acl": acl},
            points=models.FilterSelector(filter=_source_filter(source)),
            wait=True,
        )

    async def count(self, source: str | None = None) -> int:
        """Chunks stored (in one source)."""
        if not await self.exists():
            return 0
        cond = _source_filter(source) if source else None
        return (await (await self.client()).count(self.collection, count_filter=cond, exact=True)).count

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
            log.warning("the document index '%s' is empty — run 'hearth index'", self.collection)
            return []
        client = await self.client()
        flt = acl_filter(acl)
        sparse_vec = _sparse(sparse) if sparse and sparse[0] else None
        threshold = min_similarity or None
        query: list[float] | models.SparseVector | models.FusionQuery | None
        using: str | None = None
        prefetch: list[models.Prefetch] | None = None
        if mode == "dense":
            query, using = dense, PAGE if field == "title" else DENSE
        elif mode == "bm25":
            if sparse_vec is None:
                return []
            query, using, threshold = sparse_vec, TITLE if field == "title" else SPARSE, None
        else:
            depth = hybrid_depth(limit)
            prefetch = [
                models.Prefetch(query=dense, using=DENSE, filter=flt, limit=depth, score_threshold=threshold)
            ]
            if sparse_vec is not None:
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
        except _FAILURES as exc:
            raise RetrievalError(f"The vector store query failed: {exc}") from exc
        return [ScoredChunk(str(p.id), float(p.score), dict(p.payload or {})) for p in result.points]

    async def scroll(self, offset: str | None, limit: int) -> tuple[list[StoredChunk], str | None]:
        """A page of points with vectors and payload, in id order, and the next page's offset."""
        if not await self.exists():
            return [], None
        points, after = await (await self.client()).scroll(
            self.collection, offset=offset, limit=limit, with_payload=True, with_vectors=True
        )
        out = []
        for p in points:
            out.append(stored_chunk(str(p.id), p.vector, p.payload))
        return out, (str(after) if after is not None else None)

    async def commit(self) -> None:
        """Nothing to do: every write already waited for the server (or local mode) to apply it."""

    async def info(self) -> StoreInfo:
        """Kind, location, point count and vector size (disk size is the server's business)."""
        local = self.path is not None and self.path != ":memory:"
        disk = await asyncio.to_thread(_disk_bytes, Path(str(self.path))) if local else None
        return StoreInfo(self.kind, self.location, await self.count(), await self.dimension(), disk)

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
