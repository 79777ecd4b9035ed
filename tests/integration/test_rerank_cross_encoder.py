"""The cross_encoder reranker on real weights: ONNX scores against a numpy forward pass, the rerank
stage through the real search pipeline, the budget fallback, and the refusals.

No cross-encoder is on PyPI, so the test makes one from the bundled all-MiniLM-L6-v2 encoder: a
deterministic pooler and one-logit classifier head, saved as a BertForSequenceClassification
checkpoint (and the same weights in XLM-RoBERTa's layout, position ids offset by two).
"""

from __future__ import annotations

import json
import logging
import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file
from tokenizers import Tokenizer

from core.config import Settings
from core.errors import RetrievalError
from core.retrieval.config import RerankSettings
from core.retrieval.cross_encoder import CrossEncoderModel, CrossEncoderReranker, build_cross_encoder
from core.retrieval.embedders import bundled_embedder_path
from core.retrieval.rerank import get_reranker, rerank_order
from core.retrieval.search import DocsRetriever
from core.retrieval.sync import Indexer
from tests.fixtures.core import make_settings
from tests.fixtures.retrieval import HashEmbedder, corpus_settings

PAIRS = [
    ("how many vacation days do I get", "New employees get 20 vacation days per year."),
    ("how many vacation days do I get", "Hotels are reimbursed up to 180 EUR per night."),
    ("roll back a deploy", "Run /deploy api rollback in #deploys to redeploy the previous image."),
    ("roll back a deploy", "Acknowledge pages in PagerDuty within 5 minutes. " * 6),
    (
        "who approves time off",
        "Request time off in the HR portal; your manager approves it within three days.",
    ),
]


def make_cross_encoder(dest: Path, kind: str = "bert", drop: str | None = None) -> Path:
    """A cross-encoder directory: MiniLM's encoder with a seeded head (``drop``: leave that weight out)."""
    src = bundled_embedder_path()
    dest.mkdir(parents=True)
    for name in ("tokenizer.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json"):
        if (src / name).is_file():
            shutil.copy(src / name, dest / name)
    cfg = json.loads((src / "config.json").read_text())
    encoder = {
        k: v for k, v in load_file(str(src / "model.safetensors")).items() if not k.startswith("pooler.")
    }
    rng = np.random.default_rng(20)
    hidden = int(cfg["hidden_size"])
    dense_w = rng.normal(0, 0.2, (hidden, hidden)).astype(np.float32)
    dense_b = rng.normal(0, 0.05, hidden).astype(np.float32)
    out_w = rng.normal(0, 1.0, (1, hidden)).astype(np.float32)
    out_b = np.array([0.1], dtype=np.float32)
    cfg.update(id2label={"0": "LABEL_0"}, label2id={"LABEL_0": 0})
    if kind == "bert":
        weights = {f"bert.{k}": v for k, v in encoder.items()}
        weights |= {"bert.pooler.dense.weight": dense_w, "bert.pooler.dense.bias": dense_b}
        weights |= {"classifier.weight": out_w, "classifier.bias": out_b}
        cfg["architectures"] = ["BertForSequenceClassification"]
    else:  # XLM-RoBERTa: positions start at padding_idx + 1 = 2; one token type
        weights = {f"roberta.{k}": v for k, v in encoder.items()}
        table = encoder["embeddings.position_embeddings.weight"]
        weights["roberta.embeddings.position_embeddings.weight"] = np.concatenate(
            [np.zeros((2, hidden), np.float32), table]
        )
        weights["roberta.embeddings.token_type_embeddings.weight"] = encoder[
            "embeddings.token_type_embeddings.weight"
        ][:1]
        weights |= {"classifier.dense.weight": dense_w, "classifier.dense.bias": dense_b}
        weights |= {"classifier.out_proj.weight": out_w, "classifier.out_proj.bias": out_b}
        cfg.update(
            model_type="xlm-roberta",
            architectures=["XLMRobertaForSequenceClassification"],
            pad_token_id=1,
            type_vocab_size=1,
            max_position_embeddings=int(cfg["max_position_embeddings"]) + 2,
        )
    if drop is not None:
        del weights[drop]
    save_file({k: np.ascontiguousarray(v) for k, v in weights.items()}, str(dest / "model.safetensors"))
    (dest / "config.json").write_text(json.dumps(cfg))
    return dest


def _layer_norm(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return np.asarray((x - mean) / np.sqrt(var + eps) * gamma + beta)


_erf = np.vectorize(math.erf)


def reference_scores(model_dir: Path, pairs: list[tuple[str, str]]) -> list[float]:
    """The classifier's logit per pair, one unpadded pair at a time, in float64 numpy."""
    cfg = json.loads((model_dir / "config.json").read_text())
    raw = load_file(str(model_dir / "model.safetensors"))
    roberta = cfg["model_type"] != "bert"
    prefix = "roberta." if roberta else "bert."
    w = {k.removeprefix(prefix): v.astype(np.float64) for k, v in raw.items()}
    eps, heads = cfg["layer_norm_eps"], cfg["num_attention_heads"]
    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.enable_truncation(512)
    out = []
    for query, passage in pairs:
        enc = tokenizer.encode(query, passage)
        ids = np.array(enc.ids)
        types = np.zeros_like(ids) if roberta else np.array(enc.type_ids)
        start = 2 if roberta else 0
        x = (
            w["embeddings.word_embeddings.weight"][ids]
            + w["embeddings.position_embeddings.weight"][start : start + len(ids)]
            + w["embeddings.token_type_embeddings.weight"][types]
        )
        x = _layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], eps)
        for i in range(cfg["num_hidden_layers"]):
            p = f"encoder.layer.{i}."

            def lin(name: str, v: np.ndarray, p: str = p) -> np.ndarray:
                return v @ w[p + name + ".weight"].T + w[p + name + ".bias"]

            q, k, v = (lin(f"attention.self.{n}", x) for n in ("query", "key", "value"))
            d = q.shape[-1] // heads
            split = [t.reshape(len(ids), heads, d).transpose(1, 0, 2) for t in (q, k, v)]
            logits = split[0] @ split[1].transpose(0, 2, 1) / math.sqrt(d)
            probs = np.exp(logits - logits.max(-1, keepdims=True))
            probs /= probs.sum(-1, keepdims=True)
            context = (probs @ split[2]).transpose(1, 0, 2).reshape(len(ids), heads * d)
            x = _layer_norm(
                x + lin("attention.output.dense", context),
                w[p + "attention.output.LayerNorm.weight"],
                w[p + "attention.output.LayerNorm.bias"],
                eps,
            )
            inter = lin("intermediate.dense", x)
            act = 0.5 * inter * (1 + _erf(inter / math.sqrt(2)))
            x = _layer_norm(
                x + lin("output.dense", act),
                w[p + "output.LayerNorm.weight"],
                w[p + "output.LayerNorm.bias"],
                eps,
            )
        head = ("classifier.dense", "classifier.out_proj") if roberta else ("pooler.dense", "classifier")
        pooled = np.tanh(w[head[0] + ".weight"] @ x[0] + w[head[0] + ".bias"])
        out.append(float((w[head[1] + ".weight"] @ pooled + w[head[1] + ".bias"])[0]))
    return out


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_cross_encoder(tmp_path_factory.mktemp("ce") / "ms-marco-test")


@pytest.mark.parametrize("kind", ["bert", "xlm-roberta"])
def test_onnx_scores_equal_a_numpy_forward_pass(tmp_path: Path, kind: str) -> None:
    path = make_cross_encoder(tmp_path / kind, kind)
    expected = reference_scores(path, PAIRS)
    model = CrossEncoderModel(path, quantize=False, max_tokens=512)
    got = model.score(PAIRS[0][0], [p for q, p in PAIRS if q == PAIRS[0][0]])
    assert got == pytest.approx(expected[:2], abs=1e-3)
    # Pairs of different lengths share padded batches: each score is its own pair's.
    everything = [model.score(q, [p])[0] for q, p in PAIRS]
    assert everything == pytest.approx(expected, abs=1e-3)
    assert len({round(s, 2) for s in expected}) == len(expected)  # the head tells the pairs apart
    int8 = CrossEncoderModel(path, quantize=True, max_tokens=512)
    quantized = [int8.score(q, [p])[0] for q, p in PAIRS]
    assert np.corrcoef(quantized, expected)[0, 1] > 0.98


def test_a_directory_with_only_vocab_txt_tokenizes_the_same(tmp_path: Path, model_dir: Path) -> None:
    legacy = tmp_path / "legacy"
    shutil.copytree(model_dir, legacy)
    (legacy / "tokenizer.json").unlink()
    old = CrossEncoderModel(legacy, quantize=False, max_tokens=512)
    new = CrossEncoderModel(model_dir, quantize=False, max_tokens=512)
    docs = [p for _, p in PAIRS]
    assert old.score("vacation days", docs) == pytest.approx(new.score("vacation days", docs), abs=1e-5)


def test_long_pairs_are_truncated_to_n_ctx(model_dir: Path) -> None:
    model = CrossEncoderModel(model_dir, quantize=False, max_tokens=4096)
    assert model.max_tokens == 512  # the model's positions bound it
    short = CrossEncoderModel(model_dir, quantize=False, max_tokens=256)
    tokenizer, _ = short.load()
    assert len(tokenizer.encode("vacation days", "word " * 2000).ids) == 256
    assert len(short.score("vacation days", ["word " * 2000])) == 1


def _with_rerank(base: Settings, **rerank: Any) -> Settings:
    settings = base.retrieval.rerank.model_copy(update={"backend": "cross_encoder", **rerank})
    return base.model_copy(update={"retrieval": base.retrieval.model_copy(update={"rerank": settings})})


async def _index(settings: Settings) -> None:
    indexer = Indexer(settings, embedder=HashEmbedder())
    try:
        await indexer.sync()
    finally:
        await indexer.aclose()


async def test_the_rerank_stage_orders_the_fused_candidates_by_the_cross_encoder(
    tmp_path: Path, model_dir: Path
) -> None:
    base = corpus_settings(tmp_path)
    await _index(base)
    question = "how many vacation days do I get"
    plain = DocsRetriever(base, embedder=HashEmbedder())
    fused = await plain.search(question, acl=None, k=10)
    await plain.aclose()

    settings = _with_rerank(base, model_path=model_dir, top_n=20, budget_ms=60000)
    retriever = DocsRetriever(settings, embedder=HashEmbedder())
    assert isinstance(retriever.reranker, CrossEncoderReranker)
    hits = await retriever.search(question, acl=None, k=10)
    await retriever.aclose()
    assert {h.chunk_id for h in hits} == {h.chunk_id for h in fused}  # every candidate fits in top_n
    # What the stage sends: each chunk's title and text.
    texts = [f"{h.title}\n{h.text}".strip() for h in fused]
    expected = dict(
        zip(
            [h.chunk_id for h in fused],
            reference_scores(model_dir, [(question, t) for t in texts]),
            strict=True,
        )
    )
    assert [h.chunk_id for h in hits] == sorted(expected, key=lambda c: -expected[c])
    assert [h.chunk_id for h in hits] != [h.chunk_id for h in fused]  # the stage moved something
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


async def test_a_search_that_finds_nothing_still_loads_the_model(tmp_path: Path) -> None:
    # `hearth serve` warms up with one search as nobody: it must pay the reranker's start too.
    base = corpus_settings(tmp_path)
    await _index(base)
    retriever = DocsRetriever(
        _with_rerank(base, model_path=make_cross_encoder(tmp_path / "fresh")), embedder=HashEmbedder()
    )
    assert isinstance(retriever.reranker, CrossEncoderReranker) and not retriever.reranker.model.loaded
    assert await retriever.search("warm up", acl=frozenset(), k=1) == []
    assert retriever.reranker.model.loaded
    await retriever.aclose()


async def test_scoring_past_the_budget_keeps_the_fused_order(
    tmp_path: Path, model_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # 48 pages, each pair truncated to 256 tokens: scoring them on one core takes far longer than 50 ms.
    docs = tmp_path / "long"
    docs.mkdir()
    filler = "The deploy pipeline builds the image, runs the checks and waits for approval. "
    for i in range(48):
        (docs / f"page{i}.md").write_text(f"# Deploy notes {i}\n\nTo roll back deploy {i}, " + filler * 24)
    base = make_settings(
        tmp_path,
        sources=[{"name": "notes", "type": "files", "path": str(docs)}],
        retrieval={"chunk_size": 2400, "chunk_overlap": 0},
    )
    await _index(base)
    question = "roll back a deploy"
    plain = DocsRetriever(base, embedder=HashEmbedder())
    fused = [h.chunk_id for h in await plain.search(question, acl=None, k=30)]
    await plain.aclose()
    assert len(fused) == 30

    tight = DocsRetriever(
        _with_rerank(base, model_path=model_dir, top_n=200, budget_ms=50, n_ctx=256, threads=1),
        embedder=HashEmbedder(),
    )
    assert isinstance(tight.reranker, CrossEncoderReranker)
    await tight.reranker.prepare()  # the graph is built: what follows is scoring alone
    with caplog.at_level(logging.WARNING, logger="core.retrieval.rerank"):
        kept = [h.chunk_id for h in await tight.search(question, acl=None, k=30)]
    await tight.aclose()
    assert kept == fused
    assert "over its 50 ms budget" in caplog.text
    # With time to finish, the same model reorders them: the budget, not the model, kept the order.
    roomy = DocsRetriever(
        _with_rerank(base, model_path=model_dir, top_n=200, budget_ms=60000, n_ctx=256, threads=1),
        embedder=HashEmbedder(),
    )
    reranked = [h.chunk_id for h in await roomy.search(question, acl=None, k=30)]
    await roomy.aclose()
    assert reranked != fused


def test_what_cannot_run_is_refused_in_one_sentence(tmp_path: Path, model_dir: Path) -> None:
    def refused(path: Path | None) -> str:
        with pytest.raises(RetrievalError) as raised:
            get_reranker(RerankSettings(backend="cross_encoder", model_path=path))
        return str(raised.value)

    assert "retrieval.rerank.model_path is not set" in refused(None)
    assert "No cross-encoder directory at" in refused(tmp_path / "absent")
    gpt = tmp_path / "gpt"
    gpt.mkdir()
    (gpt / "config.json").write_text(json.dumps({"model_type": "gpt2", "hidden_act": "gelu_new"}))
    assert "backend: remote" in refused(gpt)
    embedder = tmp_path / "embedder"
    embedder.mkdir()
    shutil.copy(bundled_embedder_path() / "config.json", embedder / "config.json")
    assert "no sequence-classification head" in refused(embedder)
    nli = tmp_path / "nli"
    nli.mkdir()
    cfg = json.loads((model_dir / "config.json").read_text())
    (nli / "config.json").write_text(json.dumps(cfg | {"id2label": {"0": "a", "1": "b", "2": "c"}}))
    assert "3 labels" in refused(nli)
    no_weights = tmp_path / "no-weights"
    no_weights.mkdir()
    shutil.copy(model_dir / "config.json", no_weights / "config.json")
    assert "No model.safetensors" in refused(no_weights)
    huge = tmp_path / "huge"  # bge-reranker-v2-m3's size: past what one serialized ONNX graph holds
    huge.mkdir()
    shutil.copy(model_dir / "config.json", huge / "config.json")
    header = json.dumps({"w": {"dtype": "F16", "shape": [600_000_000], "data_offsets": [0, 1_200_000_000]}})
    (huge / "model.safetensors").write_bytes(len(header).to_bytes(8, "little") + header.encode())
    assert "2.4 GB of float32 weights" in refused(huge) and "backend: llama_cpp" in refused(huge)
    headless = make_cross_encoder(tmp_path / "headless", drop="classifier.weight")
    with pytest.raises(RetrievalError, match="the weights lack 'classifier.weight'"):
        build_cross_encoder(headless)


async def test_a_model_that_fails_to_load_keeps_the_fused_order(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    broken = make_cross_encoder(tmp_path / "broken", drop="classifier.weight")
    reranker = CrossEncoderReranker(RerankSettings(backend="cross_encoder", model_path=broken))
    with caplog.at_level(logging.WARNING, logger="core.retrieval.rerank"):
        assert await rerank_order(reranker, "q", ["a", "b"], 1000) is None
    assert "lack 'classifier.weight'" in caplog.text
