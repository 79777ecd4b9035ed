"""The Retriever the assistant uses: hybrid (dense + BM25, RRF) search filtered by the asker's ACL."""

from __future__ import annotations

import logging

from core.config import Settings
from core.contracts import Hit
from core.retrieval.embedders import Embedder, check_identity, embedder_identity, get_embedder
from core.retrieval.sparse import query_vector
from core.retrieval.store import ChunkStore, Mode, open_store

log = logging.getLogger(__name__)


class DocsRetriever:
    """Searches the chunk store; implements :class:`core.contracts.Retriever`.

    ::

        retriever = DocsRetriever(settings)
        hits = await retriever.search("vacation days", acl=frozenset({"public"}), k=5)
        await retriever.aclose()
    """

    def __init__(
        self,
        settings: Settings,
        *,
        embedder: Embedder | None = None,
        store: ChunkStore | None = None,
        mode: Mode | None = None,
    ) -> None:
        self.settings = settings
        self.embedder = embedder or get_embedder(settings.embed)
        self.store = store or open_store(settings)
        self.mode: Mode = mode or settings.retrieval.mode
        self.languages = tuple(dict.fromkeys(s.language for s in settings.sources))
        self._embedder_checked = False

    async def search(
        self, query: str, *, acl: frozenset[str] | None, k: int, mode: Mode | None = None
    ) -> list[Hit]:
        """The ``k`` best chunks ``acl`` may read (``None``: the operator reads everything)."""
        query = query.strip()
        if not query or k < 1:
            return []
        mode = mode or self.mode
        if mode != "bm25" and not self._embedder_checked:
            # Query vectors of another embedder than the index's would rank noise: refuse, once.
            check_identity(
                await self.store.embedder(), await embedder_identity(self.embedder), self.store.location
            )
            self._embedder_checked = True
        dense = (await self.embedder.embed([query]))[0] if mode != "bm25" else None
        sparse = query_vector(query, self.languages) if mode != "dense" else None
        points = await self.store.search(
            mode,
            dense=dense,
            sparse=sparse,
            acl=acl,
            limit=k,
            min_similarity=self.settings.retrieval.min_similarity,
        )
        hits = []
        for p in points:
            pl = p.payload
            hits.append(
                Hit(
                    chunk_id=str(p.id),
                    doc_id=str(pl.get("doc_id", "")),
                    uri=str(pl.get("uri", "")),
                    title=str(pl.get("title", "")),
                    text=str(pl.get("text", "")),
                    score=p.score,
                    location=str(pl.get("location", "")),
                    source=str(pl.get("source", "")),
                )
            )
        return hits

    async def aclose(self) -> None:
        """Release the store client."""
        await self.store.aclose()
