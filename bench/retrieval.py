"""Retrieval: the embedded store (Qdrant Edge) against qdrant-client local mode, and the whole pipeline.

Two parts, each measured in the same run against its baseline:

- **store** (``--sizes 25000 100000``): synthetic chunks (384-d vectors of topic clusters with a
  low intrinsic dimension, as text embeddings have; queries near a chunk of their topic; Zipf-
  distributed words for BM25; 30% public, the rest one or two of 20 groups; each reader holds
  public and two groups) written to the ``edge`` backend and to
  qdrant-client's local mode (Hearth's embedded store until now), the same points in both. Reports
  write points/s, hybrid + ACL query p50/p95 for both (local mode bounded by ``--local-budget-s``
  per size and skipped past ``--local-max-points``: it scans every point in Python), the speed-up,
  and recall@10 of edge's dense + ACL search against exact search (numpy, the same filter).
- **pipeline** (``--chunks 300``): Hearth's indexer and hybrid search on copies of the shipped
  handbook with the real embedder, ``edge`` against ``local``; plus nDCG@10 of dense / BM25 /
  hybrid on the shipped eval set (``--langchain`` adds the plain LangChain pipeline baseline).
- **manual** (``--manual``): a real manual, Debian's git-doc (205 HTML pages, apt-get installed when
  missing and root), 48 questions by page (``bench/corpora/git-doc.jsonl``): recall@1/@5, MRR@10
  and nDCG@10 of dense, BM25, plain RRF and the full pipeline on one index, and the pipeline's
  query p50 against plain RRF's.

    .venv/bin/python bench/retrieval.py --sizes 25000 100000 --chunks 300
    .venv/bin/python bench/retrieval.py --sizes --chunks 0 --manual
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
from core.retrieval.embedders import SentenceTransformersEmbedder, get_embedder  # noqa: E402
from core.retrieval.evaluation import evaluate, load_queries  # noqa: E402
from core.retrieval.search import DocsRetriever  # noqa: E402
from core.retrieval.store import Mode  # noqa: E402
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


# --- store: synthetic points, edge against local mode ------------------------------------------
DIM = 384
GROUPS = [f"group:g{i}" for i in range(20)]


def synthetic(n: int, seed: int = 7, latent: int = 48) -> tuple[Any, list[str], list[list[str]]]:
    """``n`` unit vectors shaped like sentence embeddings, a text per point (Zipf words), an ACL each.

    Vectors are topic clusters in a ``latent``-dimensional space mapped into 384 dimensions, plus a
    little isotropic noise: text embeddings have a low intrinsic dimension. ``latent=DIM`` with
    large noise is the adversarial case (isotropic clusters, every neighbour nearly as far).
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(max(50, n // 500), latent)).astype(np.float32)
    which = rng.integers(0, len(centers), n)
    points = centers[which] + 0.5 * rng.normal(size=(n, latent)).astype(np.float32)
    mixing = rng.normal(size=(latent, DIM)).astype(np.float32) / np.sqrt(latent)
    vectors = points @ mixing + 0.05 * rng.normal(size=(n, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    vocab = [f"w{i}" for i in range(20_000)]
    ranks = np.minimum(rng.zipf(1.3, size=(n, 60)), len(vocab)) - 1
    texts = [" ".join(vocab[r] for r in row) for row in ranks]
    acls = [
        ["public"] if rng.random() < 0.3 else list(rng.choice(GROUPS, size=rng.integers(1, 3), replace=False))
        for _ in range(n)
    ]
    return vectors, texts, acls


def _chunks(vectors: Any, texts: list[str], acls: list[list[str]]) -> list[Any]:
    import uuid

    from core.jsontypes import JsonObject
    from core.retrieval.sparse import document_vector
    from core.retrieval.store import StoredChunk

    out = []
    for i, (vec, text, acl) in enumerate(zip(vectors, texts, acls, strict=True)):
        payload: JsonObject = {
            "doc_id": f"d{i // 4}",
            "source": "bench",
            "acl": [str(a) for a in acl],
            "version": "v",
            "text": text[:80],
        }
        out.append(StoredChunk(str(uuid.UUID(int=i + 1)), vec.tolist(), document_vector(text), payload))
    return out


def _queries(
    vectors: Any, texts: list[str], count: int, seed: int = 11
) -> list[tuple[list[float], Any, frozenset[str]]]:
    import numpy as np

    from core.retrieval.sparse import query_vector

    rng = np.random.default_rng(seed)
    out = []
    for i in rng.integers(0, len(vectors), count):
        q = vectors[i] + 0.03 * rng.normal(size=DIM).astype(np.float32)  # a query near its topic
        q /= np.linalg.norm(q)
        words = texts[i].split()
        text = " ".join(rng.choice(words, size=3, replace=False))
        acl = frozenset({"public", *rng.choice(GROUPS, size=2, replace=False)})
        out.append((q.tolist(), query_vector(text), acl))
    return out


async def _write(store: Any, chunks: list[Any], batch: int = 256) -> dict[str, float]:
    await store.ensure(DIM)
    started = time.perf_counter()
    for i in range(0, len(chunks), batch):
        await store.upsert(chunks[i : i + batch])
    write_s = time.perf_counter() - started
    started = time.perf_counter()
    await store.commit()  # edge: flush, merge segments, build HNSW and payload indexes
    commit_s = time.perf_counter() - started
    return {
        "write_s": round(write_s, 2),
        "commit_s": round(commit_s, 2),
        "points_per_s": round(len(chunks) / (write_s + commit_s), 1),
    }


async def _latency(store: Any, queries: list[Any], budget_s: float | None = None) -> dict[str, Any]:
    samples = []
    started = time.perf_counter()
    for dense, sparse, acl in queries:
        t0 = time.perf_counter()
        await store.search("hybrid", dense=dense, sparse=sparse, acl=acl, limit=10, min_similarity=0.0)
        samples.append(time.perf_counter() - t0)
        if budget_s is not None and time.perf_counter() - started > budget_s and len(samples) >= 3:
            break
    return {**percentiles(samples), "queries": len(samples)}


def _exact_top10(vectors: Any, acls: list[list[str]], query: list[float], acl: frozenset[str]) -> list[int]:
    import numpy as np

    allowed = np.fromiter((bool(acl.intersection(a)) for a in acls), bool, len(acls))
    scores = vectors @ np.asarray(query, dtype=np.float32)
    scores[~allowed] = -np.inf
    return [int(i) for i in np.argsort(-scores)[:10]]


async def store_bench(
    size: int, queries: int, local_max: int, local_budget_s: float, local_write_points: int, base: Path
) -> dict[str, Any]:
    """Edge against local mode on the same ``size`` synthetic points."""
    import uuid

    from core.retrieval.store_qdrant import QdrantStore
    from core.retrieval.stores import open_store

    vectors, texts, acls = synthetic(size)
    t0 = time.perf_counter()
    chunks = _chunks(vectors, texts, acls)
    bm25_s = time.perf_counter() - t0
    qs = _queries(vectors, texts, queries)
    settings = Settings(home=str(base / f"store-{size}"))
    result: dict[str, Any] = {"points": size, "bm25_encode_per_chunk_ms": round(bm25_s / size * 1000, 4)}

    edge = open_store(settings)
    try:
        result["edge"] = {"write": await _write(edge, chunks)}
        for dense, sparse, acl in qs[:5]:  # warm the caches of both engines alike
            await edge.search("hybrid", dense=dense, sparse=sparse, acl=acl, limit=10)
        result["edge"]["hybrid_acl"] = await _latency(edge, qs)
        hits = 0
        for dense, _, acl in qs:
            found = await edge.search("dense", dense=dense, sparse=None, acl=acl, limit=10)
            exact = {str(uuid.UUID(int=i + 1)) for i in _exact_top10(vectors, acls, dense, acl)}
            hits += len(exact & {h.id for h in found})
        result["edge"]["dense_acl_recall@10"] = round(hits / (10 * len(qs)), 4)
        result["edge"]["disk_mb"] = round(((await edge.info()).disk_bytes or 0) / 1e6, 1)
    finally:
        await edge.aclose()

    if size > local_max:
        result["local"] = {"skipped": f"local mode not run past {local_max} points (--local-max-points)"}
        return result
    # Local mode persists every point to SQLite as it is written: its write speed is measured on a
    # bounded prefix on disk; its queries run on all the points held in memory (the same search code).
    sample = chunks[: min(len(chunks), local_write_points)]
    on_disk = QdrantStore(settings.store, path=str(base / f"local-{size}"))
    try:
        result["local"] = {"write": {**await _write(on_disk, sample), "points_written": len(sample)}}
    finally:
        await on_disk.aclose()
    local = QdrantStore(settings.store, path=":memory:")
    try:
        await local.ensure(DIM)
        for i in range(0, len(chunks), 1024):
            await local.upsert(chunks[i : i + 1024])
        await local.search("hybrid", dense=qs[0][0], sparse=qs[0][1], acl=qs[0][2], limit=10)
        result["local"]["hybrid_acl"] = await _latency(local, qs, budget_s=local_budget_s)
        result["local"]["note"] = (
            f"write speed measured on {len(sample)} points on disk (--local-write-points); queries on all "
            f"{size} points in memory, bounded to {local_budget_s:.0f}s (--local-budget-s): "
            f"{result['local']['hybrid_acl']['queries']} of {len(qs)} ran"
        )
    finally:
        await local.aclose()
    result["speedup_hybrid_acl_p50"] = round(
        result["local"]["hybrid_acl"]["p50_ms"] / max(result["edge"]["hybrid_acl"]["p50_ms"], 1e-3), 1
    )
    result["write_speedup"] = round(
        result["edge"]["write"]["points_per_s"] / max(result["local"]["write"]["points_per_s"], 1e-3), 2
    )
    return result


# --- pipeline: the real indexer and embedder -----------------------------------------------------
async def hearth_pipeline(
    corpus: Path, home: Path, queries: list[str], rounds: int, backend: str = "edge"
) -> dict[str, Any]:
    """Hearth: index (timed), re-index unchanged (timed), hybrid queries with an ACL."""
    settings = Settings(
        home=str(home),
        sources=[{"name": "bench", "type": "files", "path": str(corpus), "acl": ["public"]}],
        retrieval={"chunk_size": CHUNK_SIZE, "chunk_overlap": OVERLAP},
        store={"backend": backend},
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
    lat: dict[Mode, list[float]] = {"hybrid": [], "dense": []}
    modes: tuple[Mode, ...] = ("hybrid", "dense")
    for _ in range(rounds):
        for q in queries:
            for mode in modes:
                t0 = time.perf_counter()
                await retriever.search(q, acl=frozenset({"public"}), k=5, mode=mode)
                lat[mode].append(time.perf_counter() - t0)
    await retriever.aclose()
    return {
        "backend": backend,
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


async def manual_eval(home: Path) -> dict[str, Any]:
    """All methods on the git manual, one index; the full pipeline's latency against plain RRF's."""
    from corpora.git_doc import EVAL as MANUAL_EVAL
    from corpora.git_doc import SOURCE, ensure_git_doc

    root = ensure_git_doc()
    if root is None:
        return {
            "skipped": "Debian's git-doc is not installed and cannot be (apt-get install git-doc, as root)"
        }
    settings = Settings(
        home=str(home),
        sources=[
            {"name": SOURCE, "type": "files", "path": str(root), "include": ["*.html"], "acl": ["public"]}
        ],
    )
    indexer = Indexer(settings)
    started = time.perf_counter()
    report = (await indexer.sync())[0]
    index_s = time.perf_counter() - started
    await indexer.aclose()
    queries = load_queries(MANUAL_EVAL)
    retriever = DocsRetriever(settings)
    try:
        methods = await evaluate(retriever, queries)
        lat: dict[str, list[float]] = {"rrf": [], "hybrid": []}
        for _ in range(3):
            for q in queries:
                for mode in ("rrf", "hybrid"):
                    t0 = time.perf_counter()
                    await retriever.search(q.query, acl=frozenset({"public"}), k=5, mode=mode)
                    lat[mode].append(time.perf_counter() - t0)
    finally:
        await retriever.aclose()
    rrf, full = percentiles(lat["rrf"]), percentiles(lat["hybrid"])
    return {
        "pages": report.added,
        "chunks": report.chunks,
        "index_seconds": round(index_s, 1),
        "questions": len(queries),
        "methods": methods,
        "query_rrf": rrf,
        "query_full": full,
        "ratio": {
            "recall@1_full_minus_rrf": round(methods["hybrid"]["recall@1"] - methods["rrf"]["recall@1"], 4),
            "query_p50_full_over_rrf": round(full["p50_ms"] / max(rrf["p50_ms"], 1e-3), 2),
        },
    }


def pipeline(chunks: int, rounds: int, with_langchain: bool, base: Path) -> dict[str, Any]:
    """The real indexer on handbook copies: edge against local mode (and LangChain), plus quality."""
    embedder = get_embedder(Settings().embed)
    asyncio.run(embedder.embed(["warm-up text"] * 32))  # load once, outside every timed section
    queries = [q.query for q in load_queries(EVAL)]
    copies = make_corpus(base / "corpus", chunks)
    out: dict[str, Any] = {"target_chunks": chunks, "handbook_copies": copies, "embedder": embedder.name}
    out["edge"] = asyncio.run(hearth_pipeline(base / "corpus", base / "p-edge", queries, rounds, "edge"))
    out["local"] = asyncio.run(hearth_pipeline(base / "corpus", base / "p-local", queries, rounds, "local"))
    out["ratio"] = {
        "indexing_docs_per_s_edge_vs_local": round(out["edge"]["docs_per_s"] / out["local"]["docs_per_s"], 3),
        "query_hybrid_p50_local_over_edge": round(
            out["local"]["query_hybrid_acl"]["p50_ms"] / max(out["edge"]["query_hybrid_acl"]["p50_ms"], 1e-3),
            1,
        ),
    }
    if with_langchain:
        st = SentenceTransformersEmbedder(Settings().embed)
        out["langchain_baseline"] = langchain_pipeline(
            base / "corpus", base / "lc-qdrant", st._model(), queries, rounds
        )
        out["ratio"]["indexing_docs_per_s_vs_langchain"] = round(
            out["edge"]["docs_per_s"] / out["langchain_baseline"]["docs_per_s"], 3
        )
    out["quality_eval_set"] = asyncio.run(quality(base / "quality"))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument(
        "--sizes", type=int, nargs="*", default=[25_000, 100_000], help="Synthetic store sizes."
    )
    parser.add_argument("--queries", type=int, default=200, help="Queries per store size.")
    parser.add_argument(
        "--local-max-points", type=int, default=100_000, help="Skip local mode past this size."
    )
    parser.add_argument(
        "--local-budget-s", type=float, default=60.0, help="Seconds of local-mode queries per size."
    )
    parser.add_argument(
        "--local-write-points", type=int, default=2000, help="Points written to local mode on disk (timed)."
    )
    parser.add_argument("--chunks", type=int, default=300, help="Pipeline corpus size in chunks (0: skip).")
    parser.add_argument(
        "--rounds", type=int, default=3, help="Rounds over the eval queries for pipeline latency."
    )
    parser.add_argument(
        "--langchain", action="store_true", help="Also run the plain LangChain pipeline baseline."
    )
    parser.add_argument(
        "--manual",
        action="store_true",
        help="Also measure every method on the git manual (Debian's git-doc).",
    )
    args = parser.parse_args()
    report: dict[str, Any] = {
        "benchmark": "retrieval",
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "note": "Timings on a shared machine are noisy: compare the ratios of one run.",
    }
    with tempfile.TemporaryDirectory(prefix="hearth-bench-") as tmp:
        base = Path(tmp)
        report["store"] = [
            asyncio.run(
                store_bench(
                    n, args.queries, args.local_max_points, args.local_budget_s, args.local_write_points, base
                )
            )
            for n in args.sizes
        ]
        if args.chunks:
            report["pipeline"] = pipeline(args.chunks, args.rounds, args.langchain, base)
        if args.manual:
            report["manual"] = asyncio.run(manual_eval(base / "manual"))
    targets: dict[str, bool] = {}
    for r in report["store"]:
        n = r["points"]
        targets[f"recall@10_ge_0.98_at_{n}"] = r["edge"]["dense_acl_recall@10"] >= 0.98
        if n >= 100_000:
            targets[f"hybrid_acl_p50_le_10ms_at_{n}"] = r["edge"]["hybrid_acl"]["p50_ms"] <= 10
        if "speedup_hybrid_acl_p50" in r and n <= 25_000:
            targets[f"hybrid_acl_ge_50x_local_at_{n}"] = r["speedup_hybrid_acl_p50"] >= 50
    if "pipeline" in report:
        p = report["pipeline"]
        evals = p["quality_eval_set"]
        targets["indexing_docs_per_s_ge_local"] = p["edge"]["docs_per_s"] >= p["local"]["docs_per_s"]
        targets["hybrid_ndcg_ge_best_single"] = evals["hybrid"]["ndcg@10"] >= max(
            evals["dense"]["ndcg@10"], evals["bm25"]["ndcg@10"]
        )
        targets["handbook_full_recall@1_ge_rrf"] = evals["hybrid"]["recall@1"] >= evals["rrf"]["recall@1"]
    manual = report.get("manual", {})
    if "methods" in manual:
        full, rrf = manual["methods"]["hybrid"], manual["methods"]["rrf"]
        targets["manual_full_recall@1_ge_0.75"] = full["recall@1"] >= 0.75
        targets["manual_full_ndcg@10_ge_0.85"] = full["ndcg@10"] >= 0.85
        targets["manual_full_recall@1_ge_rrf_plus_0.15"] = full["recall@1"] >= rrf["recall@1"] + 0.15
    report["targets"] = targets
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
