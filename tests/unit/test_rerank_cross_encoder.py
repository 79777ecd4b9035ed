"""The rerank stage's clock: a reranker's one-time start is not its budget; scoring past it is."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest
from pydantic import ValidationError

from core.errors import RetrievalError
from core.retrieval.config import RerankSettings
from core.retrieval.rerank import rerank_order


class SlowStartReranker:
    """A Reranker that takes ``start_s`` to prepare (once) and ``score_s`` per call; scores by length.

    It models the Protocol's calls and their timing, not a model: no truncation, no batching.
    """

    def __init__(self, start_s: float, score_s: float, fail_start: bool = False) -> None:
        self.start_s, self.score_s, self.fail_start = start_s, score_s, fail_start
        self.prepared = 0
        self.calls: list[list[str]] = []

    async def prepare(self) -> None:
        if self.prepared == 0:
            await asyncio.sleep(self.start_s)
            if self.fail_start:
                raise RetrievalError("the model could not load")
        self.prepared += 1

    async def scores(self, query: str, documents: Sequence[str]) -> list[float]:
        self.calls.append(list(documents))
        await asyncio.sleep(self.score_s)
        return [float(len(d)) for d in documents]

    async def aclose(self) -> None:
        pass


async def test_a_slow_first_load_does_not_spend_the_budget() -> None:
    reranker = SlowStartReranker(start_s=0.3, score_s=0.0)
    assert await rerank_order(reranker, "q", ["a", "bbb"], budget_ms=100) == [1.0, 3.0]
    assert await rerank_order(reranker, "q", ["cc"], budget_ms=100) == [2.0]
    assert reranker.prepared == 2


async def test_scoring_past_the_budget_or_a_failed_load_gives_none(caplog: pytest.LogCaptureFixture) -> None:
    slow = SlowStartReranker(start_s=0.0, score_s=0.5)
    assert await rerank_order(slow, "q", ["a", "b"], budget_ms=50) is None
    assert slow.calls == [["a", "b"]]
    broken = SlowStartReranker(start_s=0.0, score_s=0.0, fail_start=True)
    assert await rerank_order(broken, "q", ["a", "b"], budget_ms=1000) is None
    assert broken.calls == []  # nothing is scored by a model that did not load
    assert "could not load" in caplog.text and "budget" in caplog.text


def test_cross_encoder_settings_are_validated() -> None:
    settings = RerankSettings(backend="cross_encoder", precision="int8", threads=2)
    assert settings.backend == "cross_encoder" and settings.precision == "int8"
    with pytest.raises(ValidationError):
        RerankSettings(backend="cross_encoder", precision="fp16")
    with pytest.raises(ValidationError):
        RerankSettings(backend="cross-encoder")
