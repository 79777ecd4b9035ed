"""The chunk store: one collection with a named dense vector and two BM25 sparse vectors, two engines.

The sparse vectors are the chunk's text (``bm25``) and its page's fields (``title_bm25``: the page
title and summary); a page's first chunk also carries ``page``, the dense vector of those fields.
So a question naming a page's subject matches it on signals of their own, ranked by page.

``open_store(settings)`` picks the backend; both keep the same layout, payload and queries:

- ``edge`` (the default, ``store.path``): Qdrant Edge, the Qdrant engine in-process
  (:mod:`core.retrieval.store_edge`). HNSW, keyword payload indexes, sparse vectors with IDF, RRF.
- ``server`` (``store.url``): a Qdrant server or cluster through qdrant-client
  (:mod:`core.retrieval.store_qdrant`); the same class also drives qdrant-client's pure-Python
  *local mode* (``store.backend: local``), kept for comparison and tests.

Access control is a payload filter applied inside every query (each prefetch included), never
after it. An embedded store is owned by one process (see :mod:`core.retrieval.owner`)::

    store = open_store(settings)
    await store.ensure(384)
    await store.upsert([StoredChunk(id, dense, sparse, payload)])
    hits = await store.search("hybrid", dense=q, sparse=s, acl=frozenset({"public"}), limit=5)
    await store.aclose()
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from core.jsontypes import JsonObject

Mode = Literal["dense", "bm25", "hybrid"]
Field = Literal["text", "title"]
Kind = Literal["edge", "server", "local"]
DENSE = "dense"
SPARSE = "bm25"
TITLE = "title_bm25"
PAGE = "page"
# Keyword payload indexes: the ACL filter, per-document deletes, per-source relabels and deletes.
INDEXED_FIELDS = ("acl", "doc_id", "source", "version")
# Bumped when the collection layout or the meaning of its vectors changes (2: Qdrant's BM25 tokens;
# 3: the page's title/summary vectors, dense and sparse, and chunk text without HTML navigation).
LAYOUT = 3
_NAMESPACE = uuid.UUID("6f1c7a52-43c4-4f0e-9d4e-6b1f0c8e2a11")

Sparse = tuple[list[int], list[float]]


def point_id(doc_id: str, content_hash: str, signature: str, index: int) -> str:
    """A deterministic point id, so re-running an interrupted sync overwrites instead of duplicating."""
    return str(uuid.uuid5(_NAMESPACE, f"{doc_id}\x00{content_hash}\x00{signature}\x00{index}"))


@dataclass(frozen=True)
class StoredChunk:
    """A chunk ready to be written (or read back for a migration): vectors plus payload."""

    id: str
    dense: list[float]
    sparse: Sparse
    payload: JsonObject
    title_sparse: Sparse = ([], [])
    page: list[float] | None = None


def _dense_of(value: object) -> list[float] | None:
    return [float(x) for x in value if isinstance(x, float | int)] if isinstance(value, list) else None


def _sparse_of(value: object) -> Sparse:
    """A sparse vector of either client (Edge's and qdrant-client's both have indices and values)."""
    indices, values = getattr(value, "indices", None), getattr(value, "values", None)
    return (list(indices), list(values)) if indices is not None and values is not None else ([], [])


def stored_chunk(point_id: str, vectors: object, payload: JsonObject | None) -> StoredChunk:
    """A point read back from either backend as a StoredChunk (its named vectors, its payload)."""
    named = vectors if isinstance(vectors, dict) else {}
    return StoredChunk(
        point_id,
        _dense_of(named.get(DENSE)) or [],
        _sparse_of(named.get(SPARSE)),
        dict(payload or {}),
        _sparse_of(named.get(TITLE)),
        _dense_of(named.get(PAGE)),
    )


@dataclass(frozen=True)
class ScoredChunk:
    """One search result: the point id, its score and its payload."""

    id: str
    score: float
    payload: JsonObject


@dataclass(frozen=True)
class StoreInfo:
    """What `hearth doctor` and ``GET /v1/index`` say about a store."""

    kind: Kind
    location: str
    points: int
    dimension: int | None
    disk_bytes: int | None

    def as_dict(self) -> JsonObject:
        """JSON form."""
        return {
            "kind": self.kind,
            "location": self.location,
            "points": self.points,
            "dimension": self.dimension,
            "disk_bytes": self.disk_bytes,
        }


class ChunkStore(Protocol):
    """What the indexer, the retriever and the migration need from a store."""

    kind: Kind
    collection: str

    @property
    def location(self) -> str:
        """Where the store lives (a directory or a URL), for messages."""
        ...

    async def exists(self) -> bool:
        """Whether the collection exists (raises RetrievalError for an unusable one)."""
        ...

    async def ensure(self, dimension: int, embedder: str | None = None) -> None:
        """Create the collection if needed; refuse one of another vector size or an older layout.

        ``embedder`` (its identity, see :func:`core.retrieval.embedders.embedder_identity`) is
        recorded when the collection is created; an existing one recorded by another embedder is
        refused with the rebuild message (:func:`core.retrieval.embedders.check_identity`).
        """
        ...

    async def embedder(self) -> str | None:
        """The identity of the embedder that built the collection (None: none, or not recorded)."""
        ...

    async def drop(self) -> None:
        """Delete the collection and everything in it (an older layout included)."""
        ...

    async def upsert(self, chunks: Sequence[StoredChunk]) -> None:
        """Write chunks (idempotent: same ids overwrite)."""
        ...

    async def delete_doc(self, doc_id: str, keep_version: str | None = None) -> None:
        """Delete a document's chunks, or only those not of ``keep_version`` (stale versions)."""
        ...

    async def delete_source(self, source: str) -> None:
        """Delete every chunk of a source."""
        ...

    async def set_acl(self, source: str, acl: list[str]) -> None:
        """Re-label every chunk of a source with a new ACL (no re-embedding)."""
        ...

    async def count(self, source: str | None = None) -> int:
        """Chunks stored (in one source)."""
        ...

    async def dimension(self) -> int | None:
        """The dense vector size of the collection (None when there is none yet)."""
        ...

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
        """Top chunks by dense, BM25 or both fused with RRF; the ACL filter is inside every (pre)fetch.

        ``field`` picks the vectors searched: the chunk's text, or its page's title and summary
        (``title``: the ``page`` dense vector and the ``title_bm25`` sparse one; only a page's first
        chunk carries them, so each page is one result).
        """
        ...

    async def scroll(self, offset: str | None, limit: int) -> tuple[list[StoredChunk], str | None]:
        """A page of points with vectors and payload, in id order, and the offset of the next page."""
        ...

    async def commit(self) -> None:
        """Make what was written durable and fast to search (flush; build indexes where needed)."""
        ...

    async def info(self) -> StoreInfo:
        """Kind, location, point count, vector size and size on disk."""
        ...

    async def aclose(self) -> None:
        """Release this store's share of the engine (the last one flushes and closes it)."""
        ...


def hybrid_depth(limit: int) -> int:
    """How many candidates each half of a hybrid query fetches before RRF fusion."""
    return max(limit * 4, 20)
