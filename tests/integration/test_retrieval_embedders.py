"""Embedders: the default (ONNX Runtime) against sentence-transformers' vectors and without PyTorch,
the rebuild message for a changed embedder, the openai embedder against a loopback /v1/embeddings,
the llama_cpp embedder with the bundled GGUF."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from core.errors import RetrievalError
from core.retrieval.bert_onnx import build_sentence_bert
from core.retrieval.config import EmbedSettings
from core.retrieval.embedders import (
    MICRO_BATCH,
    SHORT_TOKENS,
    OnnxEmbedder,
    SentenceTransformersEmbedder,
    bundled_embedder_path,
    embedder_identity,
    get_embedder,
)
from core.retrieval.search import DocsRetriever
from core.retrieval.sync import Indexer
from tests.fixtures.retrieval import corpus_settings

ROOT = Path(__file__).resolve().parents[2]


async def test_openai_embedder_batches_and_keeps_order(aiohttp_server: Any) -> None:
    requests: list[dict[str, Any]] = []
    auth: list[str | None] = []

    async def embeddings(request: web.Request) -> web.Response:
        body = await request.json()
        requests.append(body)
        auth.append(request.headers.get("Authorization"))
        if body["model"] == "broken":
            return web.json_response(
                {"error": {"message": "bad model", "type": "invalid_request_error"}}, status=400
            )
        data = [
            {"object": "embedding", "index": i, "embedding": [float(len(t)), 1.0]}
            for i, t in enumerate(body["input"])
        ]
        data.reverse()  # the client must order by index, not by position
        return web.json_response(
            {
                "object": "list",
                "data": data,
                "model": body["model"],
                "usage": {"prompt_tokens": 1, "total_tokens": 1},
            }
        )

    app = web.Application()
    app.router.add_post("/v1/embeddings", embeddings)
    server = await aiohttp_server(app, port=0)
    base = str(server.make_url("/v1"))
    embedder = get_embedder(EmbedSettings(backend="openai", base_url=base, api_key="sk-test", batch_size=2))
    vectors = await embedder.embed(["a", "bb", "ccc", "dddd", "x" * 5000])
    assert [v[0] for v in vectors] == [1.0, 2.0, 3.0, 4.0, 2000.0]  # over-long input truncated to max_chars
    assert [len(r["input"]) for r in requests] == [2, 2, 1]
    assert await embedder.dimension() == 2
    broken = get_embedder(EmbedSettings(backend="openai", base_url=base, api_key="sk-test", model="broken"))
    with pytest.raises(RetrievalError, match="embeddings endpoint") as raised:
        await broken.embed(["a"])
    # The key travels as a bearer header on every request, and nowhere else (bodies, errors).
    assert len(auth) == len(requests) >= 4 and set(auth) == {"Bearer sk-test"}
    assert "sk-test" not in json.dumps(requests) and "sk-test" not in str(raised.value)


@pytest.mark.llama
async def test_llama_cpp_embedder_with_a_gguf(bundled_model: Path) -> None:
    embedder = get_embedder(EmbedSettings(backend="llama_cpp", model_path=bundled_model, batch_size=2))
    vectors = await embedder.embed(["vacation days", "vacation days", "deploy rollback " * 400])
    assert len(vectors) == 3 and len(vectors[0]) == await embedder.dimension() > 100
    assert vectors[0] == pytest.approx(vectors[1])
    assert vectors[0] != pytest.approx(vectors[2])


# --- the default embedder: all-MiniLM-L6-v2 on ONNX Runtime, no PyTorch -----------------------------

SENTENCES = [
    "How many vacation days do new employees get?",
    "New employees get 20 vacation days per year.",
    "Run /deploy api rollback in #deploys to redeploy the previous image.",
    "The on-call stipend is 300 EUR per week of primary on-call.",
    "Submit receipts in Expensify within 30 days; hotels are reimbursed up to 180 EUR per night.",
    "SELECT count(*) FROM tickets WHERE closed_at IS NULL;",
    "def rollback(service: str) -> None:\n    deploy(service, previous_image(service))",
    "Café crème, naïve façade — résumé",
    "新员工每年有二十天假期。",
    "ok",
    # Longer than the model's 256 tokens: truncated where sentence-transformers truncates.
    "Incident response: page the on-call engineer, open a channel, write the timeline. " * 30,
]


def _cosines(a: list[list[float]], b: list[list[float]]) -> list[float]:
    return [sum(x * y for x, y in zip(u, v, strict=True)) for u, v in zip(a, b, strict=True)]


async def test_onnx_default_gives_the_sentence_transformers_vectors() -> None:
    pytest.importorskip("sentence_transformers", reason="the PyTorch reference needs hearth[torch]")
    reference = await SentenceTransformersEmbedder(EmbedSettings()).embed(SENTENCES)
    default = get_embedder(EmbedSettings())
    assert isinstance(default, OnnxEmbedder) and await default.dimension() == 384
    int8 = await default.embed(SENTENCES)
    fp32 = await get_embedder(EmbedSettings(precision="fp32")).embed(SENTENCES)
    assert min(_cosines(int8, reference)) >= 0.99
    assert min(_cosines(fp32, reference)) >= 0.9999
    assert all(abs(sum(x * x for x in v) - 1.0) < 1e-4 for v in int8)  # normalised, like the reference
    # Different texts stay apart: the query is nearest to its answer, not to an unrelated line.
    cos = _cosines([int8[0]] * len(int8), int8)
    assert cos[1] == max(cos[1:])


async def test_onnx_keeps_order_across_batches_and_threads() -> None:
    # Short texts (float graph) and long ones (int8), more than one batch of each, mixed up.
    texts = [f"{SENTENCES[i % len(SENTENCES)]} #{i} " * (1 + 5 * (i % 2)) for i in range(4 * MICRO_BATCH + 1)]
    assert {len(t.split()) > SHORT_TOKENS for t in texts} == {True, False}
    one = await get_embedder(EmbedSettings(threads=1, batch_size=2)).embed(texts)
    two = await get_embedder(EmbedSettings(threads=2)).embed(texts)
    alone = [(await get_embedder(EmbedSettings(threads=1)).embed([t]))[0] for t in texts]
    assert len(one) == len(two) == len(texts)
    assert min(_cosines(one, alone)) > 0.999 and min(_cosines(two, alone)) > 0.999


def test_default_embedder_runs_without_pytorch(tmp_path: Path) -> None:
    # A fresh interpreter where torch, transformers and sentence-transformers cannot be imported.
    script = textwrap.dedent(
        """
        import asyncio, importlib.abc, json, sys

        class NoTorch(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in {"torch", "transformers", "sentence_transformers"}:
                    raise ImportError(f"No module named {name!r} (blocked)")
                return None

        sys.meta_path.insert(0, NoTorch())
        from core.errors import ConfigError
        from core.retrieval.config import EmbedSettings
        from core.retrieval.embedders import get_embedder

        vectors = asyncio.run(get_embedder(EmbedSettings()).embed(["vacation days", "rollback"]))
        try:
            asyncio.run(get_embedder(EmbedSettings(backend="sentence_transformers")).embed(["x"]))
            torch_error = None
        except ConfigError as exc:
            torch_error = str(exc)
        print(json.dumps({"dims": [len(v) for v in vectors], "torch_error": torch_error,
                          "loaded": sorted(m for m in ("torch", "transformers") if m in sys.modules)}))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=240, check=True
    ).stdout
    report = json.loads(out.strip().splitlines()[-1])
    assert report["dims"] == [384, 384] and report["loaded"] == []
    assert "pip install 'hearth[torch]'" in report["torch_error"]


def test_onnx_embedder_refuses_what_it_cannot_run(tmp_path: Path) -> None:
    bundled = bundled_embedder_path()
    no_weights = tmp_path / "no-weights"
    no_weights.mkdir()
    (no_weights / "config.json").write_text((bundled / "config.json").read_text())
    with pytest.raises(RetrievalError, match="No model.safetensors"):
        build_sentence_bert(no_weights)
    other = tmp_path / "gpt"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"model_type": "gpt2", "hidden_act": "gelu_new"}))
    with pytest.raises(RetrievalError, match=r"hearth\[torch\]"):
        build_sentence_bert(other)
    with pytest.raises(RetrievalError, match="No embedding model directory"):
        asyncio.run(get_embedder(EmbedSettings(model_path=tmp_path / "missing")).embed(["x"]))


@pytest.mark.parametrize("backend", ["edge", "local"])
async def test_changed_embedder_on_an_existing_index_needs_a_rebuild(tmp_path: Path, backend: str) -> None:
    # int8 and fp32 make vectors of the same size: only the recorded identity tells them apart.
    built = corpus_settings(tmp_path, store={"backend": backend})
    changed = corpus_settings(tmp_path, store={"backend": backend}, embed={"precision": "fp32"})
    indexer = Indexer(built)
    try:
        await indexer.sync()
        points = await indexer.store.count()
        recorded = await indexer.store.embedder()
    finally:
        await indexer.aclose()
    assert points > 0 and recorded == await embedder_identity(get_embedder(built.embed))

    indexer = Indexer(changed)
    try:
        with pytest.raises(RetrievalError, match=r"built by the embedder 'onnx:.*:int8.*--rebuild") as raised:
            await indexer.sync()
        assert "fp32" in str(raised.value)
        assert await indexer.store.count() == points  # nothing of the new embedder was written
    finally:
        await indexer.aclose()
    retriever = DocsRetriever(changed)
    try:
        with pytest.raises(RetrievalError, match="--rebuild"):
            await retriever.search("vacation days", acl=None, k=3, mode="hybrid")
        assert await retriever.search("vacation days", acl=None, k=3, mode="bm25")  # no vectors involved
    finally:
        await retriever.aclose()

    indexer = Indexer(changed)
    try:
        await indexer.sync(rebuild=True)
        assert await indexer.store.embedder() == await embedder_identity(get_embedder(changed.embed))
    finally:
        await indexer.aclose()
    retriever = DocsRetriever(changed)
    try:
        hits = await retriever.search("How many vacation days do new employees get?", acl=None, k=3)
        assert hits and hits[0].uri.endswith("leave.md")
    finally:
        await retriever.aclose()


@pytest.mark.slow
def test_embedders_bench_prints_the_ratio_and_the_cosines() -> None:
    pytest.importorskip("sentence_transformers", reason="the bench's baseline needs hearth[torch]")
    out = subprocess.run(
        [sys.executable, "bench/embedders.py", "--chunks", "8", "--rounds", "1", "--no-quality"],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=True,
    ).stdout  # fmt: skip
    report = json.loads(out)
    assert report["chunks"]["count"] == 8 and report["chunks"]["mean_chars"] > 500
    assert report["ratio"]["onnx_int8_vs_pytorch"] > 0
    assert report["results"]["onnx_int8"]["cosine_to_pytorch_min"] >= 0.99
    assert report["results"]["onnx_fp32"]["cosine_to_pytorch_min"] >= 0.9999
