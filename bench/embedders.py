"""Embedders: the default (all-MiniLM-L6-v2 on ONNX Runtime) versus sentence-transformers on PyTorch.

Same run, same chunks (1000-character windows of the shipped handbook, 150 overlapping, copies
with each team's own numbers until ``--chunks``), rounds interleaved so that load on a shared
machine falls on every side alike. Prints JSON: chunks/s per embedder (median and best round, model
load time outside the timing), the ratio to PyTorch, the cosine of each one's vectors to PyTorch's,
and recall@5 / nDCG@10 (dense and hybrid) on the shipped eval set (deploy/demo/eval.jsonl) with
each embedder indexing the handbook through Hearth's indexer. Also the thread layouts measured for
the default: N single-threaded runs side by side (what ``embed.threads`` sets) versus one run on N
intra-op threads::

    .venv/bin/python bench/embedders.py --chunks 192 --rounds 3
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
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402

from core.config import Settings  # noqa: E402
from core.retrieval.config import EmbedSettings  # noqa: E402
from core.retrieval.embedders import (  # noqa: E402
    OnnxEmbedder,
    SentenceTransformersEmbedder,
    _Batched,
    _OnnxModel,
    bundled_embedder_path,
)
from core.retrieval.evaluation import evaluate, load_queries  # noqa: E402
from core.retrieval.search import DocsRetriever  # noqa: E402
from core.retrieval.sync import Indexer  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
HANDBOOK = ROOT / "deploy" / "demo" / "handbook"
EVAL = ROOT / "deploy" / "demo" / "eval.jsonl"
SIZE, OVERLAP = 1000, 150


def make_chunks(target: int) -> list[str]:
    """1000-character windows over copies of the handbook, each copy with its own numbers."""
    docs = [p.read_text() for p in sorted(HANDBOOK.glob("*.md"))]
    chunks: list[str] = []
    copy = 0
    while len(chunks) < target:
        for text in docs:
            text = re.sub(r"\d+", lambda m, c=copy: str(int(m.group(0)) + c), text)
            starts = range(0, max(1, len(text) - OVERLAP), SIZE - OVERLAP)
            chunks.extend(text[s : s + SIZE] for s in starts if len(text[s : s + SIZE]) > SIZE // 2)
        copy += 1
    return chunks[:target]


def intra_op_runner(threads: int) -> Callable[[list[str]], list[list[float]]]:
    """The default model as one run at a time on ``threads`` intra-op threads (not what embed.threads does)."""
    model = _OnnxModel(bundled_embedder_path(), True, threads=1, intra_op_threads=threads)
    return model.encode


async def quality(backend: str, precision: str, home: Path) -> dict[str, dict[str, float]]:
    """recall@5 / nDCG@10 per mode with this embedder indexing the handbook through Hearth."""
    settings = Settings(
        home=str(home),
        sources=[{"name": "handbook", "type": "files", "path": str(HANDBOOK), "acl": ["public"]}],
        embed={"backend": backend, "precision": precision},
    )
    indexer = Indexer(settings)
    try:
        await indexer.sync()
    finally:
        await indexer.aclose()
    retriever = DocsRetriever(settings)
    try:
        results = await evaluate(retriever, load_queries(EVAL), modes=("dense", "hybrid"))
    finally:
        await retriever.aclose()
    return {mode: {k: v for k, v in m.items() if k in ("recall@5", "ndcg@10")} for mode, m in results.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--chunks", type=int, default=192, help="Chunks embedded per round (default 192).")
    parser.add_argument("--rounds", type=int, default=3, help="Timed rounds per embedder (default 3).")
    parser.add_argument("--no-quality", action="store_true", help="Skip the eval-set quality part.")
    args = parser.parse_args()
    chunks = make_chunks(args.chunks)
    cores = len(os.sched_getaffinity(0))

    def embedder(kind: type[_Batched], **embed: Any) -> Callable[[list[str]], list[list[float]]]:
        instance = kind(EmbedSettings(**embed))
        return lambda texts: asyncio.run(instance.embed(texts))

    sides: dict[str, Callable[[list[str]], list[list[float]]]] = {}
    loads: dict[str, float] = {}
    plan: list[tuple[str, Callable[[], Callable[[list[str]], list[list[float]]]]]] = [
        ("pytorch", lambda: embedder(SentenceTransformersEmbedder, backend="sentence_transformers")),
        ("onnx_int8", lambda: embedder(OnnxEmbedder)),
        ("onnx_fp32", lambda: embedder(OnnxEmbedder, precision="fp32")),
        ("onnx_int8_1_thread", lambda: embedder(OnnxEmbedder, threads=1)),
    ]
    if cores > 1:
        plan.append((f"onnx_int8_one_run_{cores}_intra_op_threads", lambda: intra_op_runner(cores)))
    for name, make in plan:
        started = time.perf_counter()
        side = make()
        side(["warm-up"] * 8)  # load the model outside every timed round
        loads[name] = round(time.perf_counter() - started, 2)
        sides[name] = side
    rates: dict[str, list[float]] = {name: [] for name in sides}
    vectors: dict[str, np.ndarray] = {}
    for _ in range(args.rounds):
        for name, side in sides.items():
            started = time.perf_counter()
            out = side(chunks)
            rates[name].append(len(chunks) / (time.perf_counter() - started))
            vectors[name] = np.asarray(out, dtype=np.float32)
    reference = vectors["pytorch"]
    results = {
        name: {
            "chunks_per_s_median": round(statistics.median(r), 2),
            "chunks_per_s_best": round(max(r), 2),
            "load_s": loads[name],
            "cosine_to_pytorch_min": round(float((vectors[name] * reference).sum(axis=1).min()), 5),
            "cosine_to_pytorch_mean": round(float((vectors[name] * reference).sum(axis=1).mean()), 5),
        }
        for name, r in rates.items()
    }
    base = results["pytorch"]["chunks_per_s_median"]
    ratio = {f"{name}_vs_pytorch": round(r["chunks_per_s_median"] / base, 2) for name, r in results.items()}
    del ratio["pytorch_vs_pytorch"]
    tokenizer = SentenceTransformersEmbedder(EmbedSettings())._model().tokenizer
    tokens = [len(ids) for ids in tokenizer(chunks, truncation=True, max_length=256)["input_ids"]]
    report: dict[str, Any] = {
        "benchmark": "embedders",
        "machine": {
            "platform": platform.platform(),
            "cpus": cores,
            "loadavg_1m": round(os.getloadavg()[0], 2),
        },
        "chunks": {
            "count": len(chunks),
            "mean_chars": round(statistics.mean(len(c) for c in chunks)),
            "mean_tokens": round(statistics.mean(tokens)),
            "rounds": args.rounds,
            "note": "Timings on a shared machine are noisy: compare the ratios of one run.",
        },
        "results": results,
        "ratio": ratio,
    }
    if not args.no_quality:
        with tempfile.TemporaryDirectory(prefix="hearth-bench-emb-") as tmp:
            evals = {
                "pytorch": asyncio.run(quality("sentence_transformers", "int8", Path(tmp) / "pt")),
                "onnx_int8": asyncio.run(quality("onnx", "int8", Path(tmp) / "int8")),
                "onnx_fp32": asyncio.run(quality("onnx", "fp32", Path(tmp) / "fp32")),
            }
        report["quality_eval_set"] = evals
        report["ndcg10_delta_vs_pytorch"] = {
            name: {mode: round(m["ndcg@10"] - evals["pytorch"][mode]["ndcg@10"], 4) for mode, m in e.items()}
            for name, e in evals.items()
            if name != "pytorch"
        }
    report["targets"] = {
        "default_ge_3x_pytorch": ratio["onnx_int8_vs_pytorch"] >= 3,
        "default_cosine_ge_0.99": results["onnx_int8"]["cosine_to_pytorch_min"] >= 0.99,
    }
    if "ndcg10_delta_vs_pytorch" in report:
        report["targets"]["default_ndcg10_within_0.01"] = all(
            abs(d) <= 0.01 for d in report["ndcg10_delta_vs_pytorch"]["onnx_int8"].values()
        )
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
