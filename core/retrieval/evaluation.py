"""Retrieval quality on a labelled query set: recall@1, recall@5, MRR@10 and nDCG@10 per search mode.

The file holds one JSON object per line: ``{"query": "...", "relevant": ["doc id or uri", ...]}``.
Rankings are per document (a document's best chunk counts; its other chunks are not double-counted).
The relevant documents of a query are alternatives: recall@k is 1 when one of them is in the top k.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from core.contracts import Hit
from core.errors import InputError
from core.retrieval.search import SearchMode

MODES: tuple[SearchMode, ...] = ("dense", "bm25", "rrf", "hybrid")
# What each mode is, for tables: rrf is the plain hybrid, hybrid the full pipeline.
LABELS = {"dense": "dense", "bm25": "BM25", "rrf": "hybrid (plain RRF)", "hybrid": "full pipeline"}
METRICS = ("recall@1", "recall@5", "mrr@10", "ndcg@10")


class ModeSearcher(Protocol):
    """A retriever that searches in a given mode (DocsRetriever, or a `hearth serve` through RemoteRetriever)."""

    async def search(
        self, query: str, *, acl: frozenset[str] | None, k: int, mode: SearchMode | None = None
    ) -> Sequence[Hit]:
        """The ``k`` best chunks ``acl`` may read."""
        ...


@dataclass(frozen=True)
class EvalQuery:
    """One labelled query."""

    query: str
    relevant: frozenset[str]


def load_queries(path: Path) -> list[EvalQuery]:
    """Read and validate an eval file; a bad line names its number."""
    if not path.is_file():
        raise InputError(f"No eval file at {path}.")
    queries = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
            query, relevant = data["query"], data["relevant"]
            if (
                not isinstance(query, str)
                or not query.strip()
                or not isinstance(relevant, list)
                or not relevant
            ):
                raise ValueError
        except (ValueError, KeyError, TypeError):
            raise InputError(
                f'{path}:{number}: expected {{"query": str, "relevant": [doc id or uri, ...]}}.'
            ) from None
        queries.append(EvalQuery(query, frozenset(str(r) for r in relevant)))
    if not queries:
        raise InputError(f"{path} holds no queries.")
    return queries


def ranked_docs(hits: Sequence[Hit]) -> list[tuple[str, str]]:
    """(doc id, uri) in rank order, each document once."""
    seen: set[str] = set()
    out = []
    for hit in hits:
        if hit.doc_id not in seen:
            seen.add(hit.doc_id)
            out.append((hit.doc_id, hit.uri))
    return out


def score(ranking: Sequence[tuple[str, str]], relevant: frozenset[str]) -> dict[str, float]:
    """recall@1, recall@5, mrr@10 and ndcg@10 of one ranking (recall@1: a right page is first)."""
    flags = [doc_id in relevant or uri in relevant for doc_id, uri in ranking]
    # The listed pages are alternatives (each answers the question): recall@k is whether one is in the top k.
    recall = 1.0 if any(flags[:5]) else 0.0
    mrr = next((1.0 / (i + 1) for i, hit in enumerate(flags[:10]) if hit), 0.0)
    dcg = sum(1.0 / math.log2(i + 2) for i, hit in enumerate(flags[:10]) if hit)
    ideal = sum(1.0 / math.log2(i + 2) for i in range(min(len(relevant), 10)))
    return {
        "recall@1": 1.0 if flags[:1] == [True] else 0.0,
        "recall@5": recall,
        "mrr@10": mrr,
        "ndcg@10": dcg / ideal if ideal else 0.0,
    }


async def evaluate(
    retriever: ModeSearcher,
    queries: Sequence[EvalQuery],
    modes: Sequence[SearchMode] = MODES,
    depth: int = 40,
) -> dict[str, dict[str, float]]:
    """Mean metrics per mode: ``{"dense": {"recall@1": …, "recall@5": …, "mrr@10": …, "ndcg@10": …}, …}``."""
    results: dict[str, dict[str, float]] = {}
    for mode in modes:
        totals = dict.fromkeys(METRICS, 0.0)
        for q in queries:
            hits = await retriever.search(q.query, acl=None, k=depth, mode=mode)
            for key, value in score(ranked_docs(hits), q.relevant).items():
                totals[key] += value
        results[mode] = {k: round(v / len(queries), 4) for k, v in totals.items()}
    return results
