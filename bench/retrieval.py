"""Retrieval: Hearth's indexer and hybrid search versus a plain LangChain pipeline, same run, same embedder.

Baseline: RecursiveCharacterTextSplitter + the same sentence-transformers model (wrapped as LangChain
Embeddings) + langchain-qdrant (dense, Qdrant local mode). Hearth: heading-aware chunking, dense +
BM25 sparse vectors, RRF fusion with the ACL filter inside the query, content-hash sync.

Prints JSON: indexing chunks/s (ratio vs LangChain), hybrid query p50/p95 (vs LangChain's dense
similarity_search), re-index of the unchanged corpus (speed-up vs the first index), and nDCG@10 of
dense / BM25 / hybrid on the shipped eval set. The issue asks for 10k and 100k chunks; at CPU
embedding speed (~16-50 chunks/s on 2 cores) that is hours, so the size is a flag:

    .venv/bin/python bench/retrieval.py --chunks 300 [--queries 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from core.config import Settings  # noqa: E402
from core.retrieval.embedders import SentenceTransformersEmbedder  # noqa: E402
from core.retrieval.evaluation import evaluate, load_queries  # noqa: E402
from core.retrieval.search import DocsRetriever  # noqa: E402
from core.retrieval.sync import Indexer  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
HANDBOOK = ROOT / "deploy" / "demo" / "handbook"
EVAL = ROOT / "deploy" / "demo" / "eval.jsonl"
CHUNK_SIZE, OVERLAP = 1000, 150


def make_corpus(folder: Path, target_chunks: int) -> int:
    """Copies of the handbook, each team's copy with its own numbers, until about ``target_chunks``."""
    docs = sorted(HANDBOOK.glob("*.md"))
    per_copy = sum(max(1, len(p.read_text()) // 700) for p in docs)  # about chunks per handbook copy
    copies = max(1, round(target_chunks / per_copy))
    for i in range(copies):
        team = folder / f"team-{i:04d}"
        team.mkdir(parents=True)
        for path in docs:
            text = re.sub(r"\d+", lambda m, i=i: str(int(m.group(0)) + i), path.read_text())
            (team / path.name).write_text(f"{text}\n\nMaintained by team {i}.\n")
    return copies


def percentiles(samples: list[float]) -> dict[str, float]:
    """p50/p95 in milliseconds."""
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]
    return {"p50_ms": round(statistics.median(ordered) * 1000, 2), "p95_ms": round(p95 * 1000, 2)}


def langchain_pipeline(
    corpus: Path, store: Path, model: Any, queries: list[str], rounds: int
) -> dict[str, Any]:
    """Plain LangChain: split, embed, store in Qdrant local; then dense similarity_search."""
    from langchain_core.documents import Document
    from langchain_core.embeddings import Embeddings
    from langchain_qdrant import QdrantVectorStore
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    class SameModel(Embeddings):
        def embed_documents(self, texts: list[str]) -> list[list[float]]:
            return [
                v.tolist()
                for v in model.encode(
                    texts, batch_size=32, normalize_embeddings=True, show_progress_bar=False
                )
            ]

        def embed_query(self, text: str) -> list[float]:
            return self.embed_documents([text])[0]

    started = time.perf_counter()
    raw = [
        Document(page_content=p.read_text(), metadata={"source": str(p)})
        for p in sorted(corpus.rglob("*.md"))
    ]
    chunks = RecursiveCharacterTextSplitter(chunk_size=CHUNK_SIZE, chunk_overlap=OVERLAP).split_documents(raw)
    vs = QdrantVectorStore.from_documents(
        chunks, SameModel(), path=str(store), collection_name="lc", batch_size=64
    )
    seconds = time.perf_counter() - started
    lat = []
    for _ in range(rounds):
        for q in queries:
            t0 = time.perf_counter()
            vs.similarity_search(q, k=5)
            lat.append(time.perf_counter() - t0)
    vs.client.close()
    return {
        "docs": len(raw),
        "docs_per_s": round(len(raw) / seconds, 2),
        "chunks": len(chunks),
        "seconds": round(seconds, 2),
        "chunks_per_s": round(len(chunks) / seconds, 2),
        "query_dense": percentiles(lat),
    }


async def hearth_pipeline(corpus: Path, home: Path, queries: list[str], rounds: int) -> dict[str, Any]:
    """Hearth: index (timed), re-index unchanged (timed), hybrid queries with an ACL."""
    settings = Settings(
        home=str(home),
        sources=[{"name": "bench", "type": "files", "path": str(corpus), "acl": ["public"]}],
        retrieval={"chunk_size": CHUNK_SIZE, "chunk_overlap": OVERLAP},
    )
    indexer = Indexer(settings)
    started = time.perf_counter()
    first = (await indexer.sync())[0]
    first_s = time.perf_counter() - started
    started = time.perf_counter()
    second = (await indexer.sync())[0]
    second_s = time.perf_counter() - started
    await indexer.aclose()
    retriever = DocsRetriever(settings)
    lat: dict[str, list[float]] = {"hybrid": [], "dense": []}
    for _ in range(rounds):
        for q in queries:
            for mode in ("hybrid", "dense"):
                t0 = time.perf_counter()
                await retriever.search(q, acl=frozenset({"public"}), k=5, mode=mode)  # type: ignore[arg-type]
                lat[mode].append(time.perf_counter() - t0)
    await retriever.aclose()
    return {
        "docs": first.added,
        "docs_per_s": round(first.added / first_s, 2),
        "chunks": first.chunks,
        "seconds": round(first_s, 2),
        "chunks_per_s": round(first.chunks / first_s, 2),
        "reindex_unchanged_seconds": round(second_s, 3),
        "reindex_unchanged_docs": second.unchanged,
        "query_hybrid_acl": percentiles(lat["hybrid"]),
        "query_dense_acl": percentiles(lat["dense"]),
    }


async def quality(home: Path) -> dict[str, dict[str, float]]:
    """nDCG@10 etc. for each mode on the shipped handbook and eval set."""
    settings = Settings(
        home=str(home),
        sources=[{"name": "handbook", "type": "files", "path": str(HANDBOOK), "acl": ["public"]}],
    )
    indexer = Indexer(settings)
    await indexer.sync()
    await indexer.aclose()
    retriever = DocsRetriever(settings)
    try:
        return await evaluate(retriever, load_queries(EVAL))
    finally:
        await retriever.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--chunks", type=int, default=300, help="Approximate corpus size in chunks (default 300)."
    )
    parser.add_argument("--queries", type=int, default=3, help="Rounds over the eval queries for latency.")
    args = parser.parse_args()
    embedder = SentenceTransformersEmbedder(Settings().embed)
    model = embedder._model()  # load once, outside every timed section; both pipelines share it
    model.encode(["warm-up text"] * 32, batch_size=32)
    queries = [q.query for q in load_queries(EVAL)]
    with tempfile.TemporaryDirectory(prefix="hearth-bench-") as tmp:
        base = Path(tmp)
        copies = make_corpus(base / "corpus", args.chunks)
        lc = langchain_pipeline(base / "corpus", base / "lc-qdrant", model, queries, args.queries)
        hearth = asyncio.run(hearth_pipeline(base / "corpus", base / "hearth", queries, args.queries))
        evals = asyncio.run(quality(base / "quality"))
    best_single = max(evals["dense"]["ndcg@10"], evals["bm25"]["ndcg@10"])
    report = {
        "benchmark": "retrieval",
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "corpus": {
            "target_chunks": args.chunks,
            "handbook_copies": copies,
            "note": "10k/100k chunks are out of reach at CPU embedding speed here; pass --chunks to scale. "
            "Timings on a shared 2-core machine are noisy: compare the ratios of one run.",
        },
        "langchain_baseline": lc,
        "hearth": hearth,
        "ratio": {
            "indexing_chunks_per_s": round(hearth["chunks_per_s"] / lc["chunks_per_s"], 3),
            # Same corpus, different chunkers (Hearth cuts at headings): documents/s is the fair comparison.
            "indexing_docs_per_s": round(hearth["docs_per_s"] / lc["docs_per_s"], 3),
            "query_p50_vs_langchain_dense": round(
                hearth["query_hybrid_acl"]["p50_ms"] / lc["query_dense"]["p50_ms"], 3
            ),
            "query_p95_vs_langchain_dense": round(
                hearth["query_hybrid_acl"]["p95_ms"] / lc["query_dense"]["p95_ms"], 3
            ),
            "query_dense_p50_vs_langchain_dense": round(
                hearth["query_dense_acl"]["p50_ms"] / lc["query_dense"]["p50_ms"], 3
            ),
            "reindex_unchanged_speedup": round(
                hearth["seconds"] / max(hearth["reindex_unchanged_seconds"], 1e-6), 1
            ),
        },
        "quality_eval_set": evals,
        "targets": {
            "indexing_ge_1x_langchain": hearth["chunks_per_s"] >= lc["chunks_per_s"],
            "indexing_docs_ge_1x_langchain": hearth["docs_per_s"] >= lc["docs_per_s"],
            "reindex_ge_20x": hearth["seconds"] / max(hearth["reindex_unchanged_seconds"], 1e-6) >= 20,
            "hybrid_ndcg_ge_best_single": evals["hybrid"]["ndcg@10"] >= best_single,
        },
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
