"""The ask use case with fake backends and a fake retriever."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from core.assistant import NOT_FOUND, Assistant
from core.contracts import Answer, Delta, Hit, Request
from core.errors import InputError
from core.llm.fake import FakeBackend
from core.llm.router import Router
from tests.fixtures.core import make_settings


class FakeRetriever:
    """Returns its fixed hits (the first ``k``) and records each query.

    It models the ``Retriever`` Protocol's shape only: it does not rank, and it does not filter by
    ACL (the real store does; tests of who may read what use the real one, ``corpus_retriever``).
    """

    def __init__(self, hits: list[Hit]) -> None:
        self.hits = hits
        self.queries: list[tuple[str, frozenset[str] | None, int]] = []

    async def search(self, query: str, *, acl: frozenset[str] | None, k: int) -> Sequence[Hit]:
        self.queries.append((query, acl, k))
        return self.hits[:k]


def hit(n: int, text: str = "Employees get 25 vacation days.", score: float = 0.5) -> Hit:
    return Hit(f"c{n}", f"d{n}", f"handbook/doc{n}.md", f"Doc {n}", text, score, f"lines {n}-{n + 5}")


async def test_answer_streams_and_records_backend_model_usage(fake_assistant: Assistant) -> None:
    events = [e async for e in fake_assistant.ask_stream(Request(text="hello?"))]
    deltas = [e for e in events if isinstance(e, Delta)]
    answer = events[-1]
    assert isinstance(answer, Answer) and len(deltas) > 1
    assert answer.text == "".join(d.text for d in deltas).strip()
    data = answer.as_dict()
    assert data["backend"] == "local" and data["model"] == "fake-model"
    assert data["usage"]["completion_tokens"] > 0 and data["usage"]["prompt_tokens"] > 0
    assert {"total", "first_token", "generation"} <= set(data["timings_ms"])


@pytest.mark.parametrize("text", ["", "   \n"])
async def test_empty_question_is_refused(fake_assistant: Assistant, text: str) -> None:
    with pytest.raises(InputError, match="empty"):
        await fake_assistant.ask(Request(text=text))


async def test_binary_question_is_refused(fake_assistant: Assistant) -> None:
    with pytest.raises(InputError, match="binary"):
        await fake_assistant.ask(Request(text="abc\x00def"))


async def test_huge_question_is_refused_with_its_length_and_the_limit(
    fake_assistant: Assistant, fake_backend: FakeBackend
) -> None:
    # Cutting a question silently drops its end, often the part that matters: refuse it instead.
    with pytest.raises(InputError, match="99,999 characters; the limit is") as caught:
        await fake_assistant.ask(Request(text="why? " * 20000))
    assert caught.value.key == "too_long" and caught.value.values["length"] == 99_999
    assert fake_backend.calls == []
    fits = await fake_assistant.ask(Request(text="why? " * (fake_assistant.limits.max_question_chars // 6)))
    assert (
        fits.text
        and len(fake_backend.calls[0].messages[-1].content) < fake_assistant.limits.prompt_budget_chars
    )


async def test_answer_cites_the_chunk_that_supports_it_not_the_number_the_model_wrote(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    backend = FakeBackend(reply="Employees get 25 vacation days [1].")
    retriever = FakeRetriever([hit(1, "Expenses are paid monthly."), hit(2)])
    assistant = Assistant(settings, Router(local=backend, remote=None), retriever=retriever)
    answer = await assistant.ask(Request(text="How many vacation days?"))
    assert [c.number for c in answer.citations] == [1]
    assert answer.citations[0].uri == "handbook/doc2.md"
    assert answer.text == "Employees get 25 vacation days [1]."
    prompt = backend.calls[0].messages[-1].content
    assert "[1] Doc 1" in prompt and "[2] Doc 2" in prompt


async def test_acl_is_passed_to_retrieval_and_forbidden_text_never_reaches_the_model(
    tmp_path: Path, corpus_retriever: Any
) -> None:
    # The real store over the corpus: salaries.md is readable by group:hr and user:alice only.
    # The hash embedder models no meaning, so keyword hits are kept (no dense similarity cut-off).
    settings = make_settings(tmp_path, retrieval={"min_similarity": 0})
    backend = FakeBackend(reply="ok")
    assistant = Assistant(settings, Router(local=backend, remote=None), retriever=corpus_retriever)
    question = "What are the salary bands for engineers, and the vacation payout?"

    async def prompt_for(acl: set[str]) -> tuple[str, str]:
        before = len(backend.calls)
        answer = await assistant.ask(Request(text=question, acl=frozenset(acl)))
        return answer.text, " ".join(c.messages[-1].content for c in backend.calls[before:])

    _, outsider = await prompt_for({"public", "group:eng"})
    _, alice = await prompt_for({"public", "user:alice"})
    assert "70k to 85k EUR" in alice  # the store does find it for someone allowed to read it …
    assert "vacation days" in outsider  # the outsider's answer used what they may read …
    assert "70k to 85k EUR" not in outsider and "Salary bands" not in outsider  # … and nothing else


async def test_the_request_acl_is_what_retrieval_is_asked_with(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    retriever = FakeRetriever([hit(1)])
    assistant = Assistant(settings, Router(local=FakeBackend(reply="ok"), remote=None), retriever=retriever)
    await assistant.ask(Request(text="news?", acl=frozenset({"public", "group:eng"})))
    assert [q[1] for q in retriever.queries] == [frozenset({"public", "group:eng"})]


async def test_nothing_relevant_says_not_found_without_inventing(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    backend = FakeBackend(reply="made up")
    assistant = Assistant(settings, Router(local=backend, remote=None), retriever=FakeRetriever([]))
    answer = await assistant.ask(Request(text="What is the wifi password?"))
    assert answer.text == NOT_FOUND and answer.citations == [] and backend.calls == []


async def test_sources_beyond_the_context_window_are_dropped_with_a_notice(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, llm={"local": {"n_ctx": 1024}, "max_tokens": 64})
    backend = FakeBackend(reply="fine [1]")
    big = [hit(i, "x" * 1500) for i in range(1, 6)]
    assistant = Assistant(settings, Router(local=backend, remote=None), retriever=FakeRetriever(big))
    answer = await assistant.ask(Request(text="q"))
    assert any("left out" in n for n in answer.notices)
    assert len(backend.calls[0].messages[-1].content) <= assistant.limits.prompt_budget_chars


async def test_complete_stream_renders_a_template_and_honours_max_tokens(
    fake_assistant: Assistant, fake_backend: FakeBackend
) -> None:
    events = [
        e
        async for e in fake_assistant.complete_stream(
            "explain", Request(text="explain"), max_tokens=17, code="x = 1", language="python"
        )
    ]
    answer = events[-1]
    assert isinstance(answer, Answer) and answer.text and answer.citations == []
    call = fake_backend.calls[0]
    assert call.options.max_tokens == 17 and call.options.answer_prefix == "Explanation:"
    assert "x = 1" in call.messages[-1].content
