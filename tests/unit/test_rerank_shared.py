"""SharedReranker: one reranker lent to every retriever of a process, closed once by its owner."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.errors import RetrievalError
from core.retrieval.config import RerankSettings
from core.retrieval.rerank import RemoteReranker, SharedReranker
from core.retrieval.search import DocsRetriever
from tests.fixtures.retrieval import HashEmbedder, corpus_settings


async def test_every_retriever_is_lent_the_same_reranker_and_only_the_owner_closes_it(tmp_path: Path) -> None:
    shared = SharedReranker(RerankSettings(backend="remote", url="http://127.0.0.1:9/v1"))
    first, second = shared.get(), shared.get()
    assert first is not None and second is not None
    inner = shared._reranker
    assert isinstance(inner, RemoteReranker)
    settings = corpus_settings(tmp_path)
    retrievers = [DocsRetriever(settings, embedder=HashEmbedder(), reranker=r) for r in (first, second)]
    for retriever in retrievers:
        await retriever.aclose()
    assert not inner._client.is_closed  # closing a retriever leaves the shared reranker to the others
    assert shared.get() is not None and shared._reranker is inner  # still the same one
    await shared.aclose()
    assert inner._client.is_closed
    await shared.aclose()  # once is enough; a second close is a no-op


async def test_off_lends_nothing_and_a_wrong_path_fails_every_time_until_fixed(tmp_path: Path) -> None:
    assert SharedReranker(RerankSettings()).get() is None
    settings = RerankSettings(backend="cross_encoder", model_path=tmp_path / "absent")
    shared = SharedReranker(settings)
    for _ in range(2):  # not cached: the assistant's next build attempt tries again
        with pytest.raises(RetrievalError, match="rerank.model_path"):
            shared.get()
    await shared.aclose()


def test_the_llama_cpp_engine_runs_the_configured_llama_server(tmp_path: Path) -> None:
    gguf = tmp_path / "reranker.gguf"
    gguf.write_bytes(b"GGUF")
    binary = tmp_path / "bin" / "llama-server"
    shared = SharedReranker(RerankSettings(backend="llama_cpp", model_path=gguf), server_path=binary)
    assert shared.get() is not None
    engine = getattr(shared._reranker, "engine", None)
    assert engine is not None and engine.command()[0] == str(binary)
