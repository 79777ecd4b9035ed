"""The Retriever the assistant uses: the hybrid pipeline, filtered by the asker's ACL inside every query.

``hybrid`` (the default) fuses four rankings with weighted reciprocal rank (``retrieval.fusion``):
dense similarity and BM25 over the chunks, and BM25 and dense similarity over each page's title
and summary (ranked by page, so every chunk of a page whose title matches shares it). Each chunk then gains a share of
its page's other strong chunks, and the reranker (``retrieval.rerank``), when one is configured,
reorders the top-N within its latency budget. ``rrf`` is the plain single-query dense + BM25 RRF,
``dense`` and ``bm25`` one signal each (for comparison: ``hearth eval retrieval``).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from typing import Literal

from core.contracts import Hit
from core.retrieval.configured import IndexConfigured
from core.retrieval.embedders import Embedder, check_identity, embedder_identity, get_embedder
from core.retrieval.rerank import Reranker, get_reranker, prepared, rerank_order
from core.retrieval.sparse import Sparse, query_vector
from core.retrieval.store import ChunkStore, ScoredChunk
from core.retrieval.stores import open_store

log = logging.getLogger(__name__)

SearchMode = Literal["dense", "bm25", "rrf", "hybrid"]


class DocsRetriever:
    """Searches the chunk store; implements :class:`core.contracts.Retriever`.

    ::

        retriever = DocsRetriever(settings)
        hits = await retriever.search("vacation days", acl=frozenset({"public"}), k=5)
        await retriever.aclose()
    """

    def __init__(
        self,
        settings: IndexConfigured,
        *,
        embedder: Embedder | None = None,
        store: ChunkStore | None = None,
        mode: SearchMode | None = None,
        reranker: Reranker | None = None,
    ) -> None:
        self.settings = settings
        self.embedder = embedder or get_embedder(settings.embed)
        self.store = store or open_store(settings)
        self.mode: SearchMode = mode or settings.retrieval.mode
        if reranker is None:
            reranker = get_reranker(settings.retrieval.rerank, server_path=settings.llama_server_path)
        self.reranker = reranker
        self.languages = tuple(dict.fromkeys(s.language for s in settings.sources))
        self._embedder_checked = False

    async def search(
        self, query: str, *, acl: frozenset[str] | None, k: int, mode: SearchMode | None = None
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
        if mode == "hybrid":
            points = await self._pipeline(query, dense, sparse, acl, k)
        else:
            points = await self.store.search(
                "hybrid" if mode == "rrf" else mode,
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

    async def _pipeline(
        self, query: str, dense: list[float] | None, sparse: Sparse | None, acl: frozenset[str] | None, k: int
    ) -> list[ScoredChunk]:
        """Weighted RRF of dense, text BM25 and the page signals; page aggregation; then the reranker."""
        fusion = self.settings.retrieval.fusion
        depth = max(fusion.candidates, k)
        by_dense = await self.store.search(
            "dense",
            dense=dense,
            sparse=None,
            acl=acl,
            limit=depth,
            min_similarity=self.settings.retrieval.min_similarity,
        )
        by_text = []
        if fusion.text:
            by_text = await self.store.search("bm25", dense=None, sparse=sparse, acl=acl, limit=depth)
        chunks: dict[str, ScoredChunk] = {}
        fused: dict[str, float] = defaultdict(float)
        for weight, ranking in ((fusion.dense, by_dense), (fusion.text, by_text)):
            for rank, point in enumerate(ranking, 1):
                chunks.setdefault(point.id, point)
                fused[point.id] += weight / (fusion.rrf_k + rank)
        # The page signals (title and summary, BM25 and dense) rank pages: each result is a page's
        # first chunk; every candidate chunk of a page shares its page's share.
        by_page: dict[str, float] = defaultdict(float)
        for weight, kind in ((fusion.title, "bm25"), (fusion.page, "dense")):
            if not weight or (kind == "dense" and dense is None):
                continue
            ranking = await self.store.search(
                "bm25" if kind == "bm25" else "dense",
                dense=dense,
                sparse=sparse,
                acl=acl,
                limit=depth,
                field="title",
            )
            for rank, point in enumerate(ranking, 1):
                by_page[_doc(point)] += weight / (fusion.rrf_k + rank)
                if rank <= max(depth // 4, 1):  # the top pages join the candidates
                    chunks.setdefault(point.id, point)
        for cid, point in chunks.items():
            fused[cid] += by_page.get(_doc(point), 0.0)
        scores = _with_pages(chunks, fused, fusion.document)
        order = sorted(chunks, key=lambda cid: scores[cid], reverse=True)
        if self.reranker is not None:
            order = await self._rerank(query, order, chunks, scores)
        return [ScoredChunk(cid, scores[cid], chunks[cid].payload) for cid in order[:k]]

    async def _rerank(
        self, query: str, order: list[str], chunks: dict[str, ScoredChunk], scores: dict[str, float]
    ) -> list[str]:
        """The top-N reordered by the reranker (blended with the fused rank by ``rerank.weight``)."""
        settings = self.settings.retrieval.rerank
        if self.reranker is None:
            return order
        if len(order) < 2:
            # Nothing to reorder, but the model is loaded all the same: the search `hearth serve`
            # warms up with (as nobody, finding nothing) then pays the reranker's start too.
            await prepared(self.reranker)
            return order
        head, tail = order[: settings.top_n], order[settings.top_n :]
        texts = [
            f"{chunks[c].payload.get('title', '')}\n{chunks[c].payload.get('text', '')}".strip() for c in head
        ]
        result = await rerank_order(self.reranker, query, texts, settings.budget_ms)
        if result is None:
            return order
        model_rank = {
            c: r for r, (_, c) in enumerate(sorted(zip(result, head, strict=True), key=lambda x: -x[0]))
        }
        blended = {
            c: settings.weight / (1 + model_rank[c]) + (1 - settings.weight) / (1 + i)
            for i, c in enumerate(head)
        }
        head = sorted(head, key=lambda c: blended[c], reverse=True)
        top = max(scores.values(), default=0.0)
        for i, c in enumerate(head):  # scores follow the new order, above the tail's
            scores[c] = round(top + (len(head) - i) / len(head), 6)
        return head + tail

    async def aclose(self) -> None:
        """Release the store client and the reranker."""
        await self.store.aclose()
        if self.reranker is not None:
            await self.reranker.aclose()


def _doc(point: ScoredChunk) -> str:
    return str(point.payload.get("doc_id", ""))


def _with_pages(
    chunks: dict[str, ScoredChunk], fused: dict[str, float], share: float, strong: float = 0.5
) -> dict[str, float]:
    """Each chunk's fused score plus ``share`` of its page's other *strong* candidates.

    A sibling counts when its own score is at least ``strong`` times the best candidate's (so a long
    page with many weak matches does not outvote a short page with one strong one), halving by
    rank, the best three.
    """
    top = max(fused.values(), default=0.0)
    pages: dict[str, list[float]] = defaultdict(list)
    for cid, point in chunks.items():
        pages[_doc(point)].append(fused[cid])
    out = {}
    for cid, point in chunks.items():
        siblings = sorted(pages[_doc(point)], reverse=True)
        siblings.remove(fused[cid])
        siblings = [v for v in siblings if v >= strong * top]
        out[cid] = fused[cid] + share * sum(v / 2**i for i, v in enumerate(siblings[:3]))
    return out
