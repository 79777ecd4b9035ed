"""The use cases every surface calls. Surfaces build a Request; this module does the rest.

::

    assistant = Assistant.from_settings(settings)
    answer = await assistant.ask(Request(text="How do I request leave?", user="alice", acl=frozenset({"public"})))
    async for event in assistant.ask_stream(request):   # Delta(text) … then the Answer
        ...
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from core.config import Settings
from core.contracts import Answer, Citation, Delta, Hit, Request, Retriever
from core.llm.base import Chunk, GenOptions, Usage
from core.llm.registry import build_router
from core.llm.router import Router
from core.prompts.registry import PromptRegistry, RenderedPrompt
from core.refusals import require_text

if TYPE_CHECKING:
    from core.code.service import CodeService
    from core.tables.service import TableService

log = logging.getLogger(__name__)

NOT_FOUND = "I could not find this in the docs."
# Conservative characters-per-token used to budget prompts before the model's tokenizer is loaded.
_CHARS_PER_TOKEN = 3
_CITATION = re.compile(r"\[(\d{1,2})\]")


@dataclass(frozen=True)
class Limits:
    """Size limits derived from settings."""

    max_question_chars: int
    prompt_budget_chars: int


class Assistant:
    """The use cases (ask, complete; tables and code when configured) over one router and one prompt library."""

    def __init__(
        self,
        settings: Settings,
        router: Router,
        prompts: PromptRegistry | None = None,
        retriever: Retriever | None = None,
    ) -> None:
        self.settings = settings
        self.router = router
        self.prompts = prompts or PromptRegistry(settings.prompts.dir)
        self.retriever = retriever
        # Capabilities plugged in by core.engine.build_assistant when the settings enable them.
        self.tables: TableService | None = None
        self.code: CodeService | None = None
        n_ctx = settings.llm.local.n_ctx
        budget_tokens = max(256, n_ctx - settings.llm.max_tokens - 64)
        self.limits = Limits(
            max_question_chars=max(200, budget_tokens * _CHARS_PER_TOKEN // 2),
            prompt_budget_chars=budget_tokens * _CHARS_PER_TOKEN,
        )

    @classmethod
    def from_settings(cls, settings: Settings, *, retriever: Retriever | None = None) -> Assistant:
        """Build the assistant with the backends and templates the settings describe."""
        return cls(settings, build_router(settings), PromptRegistry(settings.prompts.dir), retriever)

    def options(self, rendered: RenderedPrompt, request: Request, **overrides: Any) -> GenOptions:
        """Generation options for a rendered prompt."""
        opts = GenOptions(
            max_tokens=self.settings.llm.max_tokens,
            temperature=self.settings.llm.temperature,
            stop=list(rendered.stop),
            completion_stop=list(rendered.completion_stop),
            priority=request.priority,
            answer_prefix=rendered.answer_prefix,
            seed=self.settings.llm.local.seed,
        )
        return replace(opts, **overrides)

    def check_question(self, request: Request) -> tuple[str, list[str]]:
        """Validate the question text; return it stripped, and notices (none today).

        Longer questions than the model's budget are refused, never silently cut: the end of a
        question is often the part that matters.
        """
        text = request.text.strip()
        require_text(text, self.limits.max_question_chars)
        return text, []

    async def ask(self, request: Request) -> Answer:
        """Answer a question; see :meth:`ask_stream`."""
        answer: Answer | None = None
        async for event in self.ask_stream(request):
            if isinstance(event, Answer):
                answer = event
        assert answer is not None
        return answer

    async def ask_stream(self, request: Request) -> AsyncIterator[Delta | Answer]:
        """Retrieve what the asker may read, prompt the model, stream the answer, end with the Answer."""
        started = time.perf_counter()
        timings: dict[str, float] = {}
        question, notices = self.check_question(request)
        history = [{"role": t.role, "text": t.text} for t in request.history]
        if self.retriever is None:
            rendered = self.prompts.render("chat", question=question, history=history)
            hits: list[Hit] = []
        else:
            t0 = time.perf_counter()
            found = await self.retriever.search(question, acl=request.acl, k=self.settings.retrieval.top_k)
            timings["retrieval"] = (time.perf_counter() - t0) * 1000
            hits = [h for h in found if h.score >= self.settings.retrieval.min_score]
            if not hits:
                timings["total"] = (time.perf_counter() - started) * 1000
                yield Delta(NOT_FOUND)
                yield Answer(NOT_FOUND, [], "none", "", Usage(), timings, notices, request.request_id)
                return
            hits, dropped = self._fit(hits, question)
            if dropped:
                notices.append(
                    f"{dropped} lower-ranked source(s) were left out to fit the model's context window."
                )
            sources = [
                {"number": i, "title": h.title, "uri": h.uri, "location": h.location, "text": h.text}
                for i, h in enumerate(hits, 1)
            ]
            rendered = self.prompts.render("answer", question=question, sources=sources, history=history)
        async for event in self._generate(rendered, request, hits, timings, notices, started):
            yield event

    async def complete_stream(
        self, template: str, request: Request, *, max_tokens: int | None = None, **variables: Any
    ) -> AsyncIterator[Delta | Answer]:
        """Render any template with ``variables`` and stream the model's output (explain, summaries…).

        ``max_tokens`` caps this generation below the ``llm.max_tokens`` default (e.g. a short summary).
        """
        started = time.perf_counter()
        rendered = self.prompts.render(template, **variables)
        overrides: dict[str, Any] = {} if max_tokens is None else {"max_tokens": max_tokens}
        async for event in self._generate(rendered, request, [], {}, [], started, **overrides):
            yield event

    async def _generate(
        self,
        rendered: RenderedPrompt,
        request: Request,
        hits: Sequence[Hit],
        timings: dict[str, float],
        notices: list[str],
        started: float,
        **overrides: Any,
    ) -> AsyncIterator[Delta | Answer]:
        """Stream ``rendered`` through the router; end with the Answer."""
        final: Chunk | None = None
        parts: list[str] = []
        t0 = time.perf_counter()
        first_token: float | None = None
        async for chunk in self.router.stream(
            rendered.messages, self.options(rendered, request, **overrides)
        ):
            if chunk.text:
                if first_token is None:
                    first_token = (time.perf_counter() - t0) * 1000
                parts.append(chunk.text)
                yield Delta(chunk.text)
            if chunk.done:
                final = chunk
        text = "".join(parts).strip()
        timings["first_token"] = first_token if first_token is not None else 0.0
        timings["generation"] = (time.perf_counter() - t0) * 1000
        timings["total"] = (time.perf_counter() - started) * 1000
        assert final is not None
        yield Answer(
            text=text,
            citations=self._citations(text, hits) if hits else [],
            backend=final.backend or "local",
            model=final.model or "",
            usage=final.usage or Usage(),
            timings_ms=timings,
            notices=notices,
            request_id=request.request_id,
        )

    def _fit(self, hits: Sequence[Hit], question: str) -> tuple[list[Hit], int]:
        """Keep the best-ranked hits that fit the prompt budget; trim the last one if needed."""
        budget = self.limits.prompt_budget_chars - len(question) - 1200  # template text and headers
        kept: list[Hit] = []
        for hit in hits:
            cost = len(hit.text) + len(hit.title) + len(hit.uri) + 32
            if cost <= budget:
                kept.append(hit)
                budget -= cost
            elif not kept and budget > 200:
                kept.append(replace(hit, text=hit.text[: budget - 64]))
                budget = 0
        return kept, len(hits) - len(kept)

    @staticmethod
    def _citations(text: str, hits: Sequence[Hit]) -> list[Citation]:
        """The sources the answer cites by number; all given sources when it cites none."""
        cited = {int(n) for n in _CITATION.findall(text) if 1 <= int(n) <= len(hits)}
        numbers = sorted(cited) or list(range(1, len(hits) + 1))
        return [
            Citation(
                n,
                hits[n - 1].title,
                hits[n - 1].uri,
                hits[n - 1].doc_id,
                hits[n - 1].chunk_id,
                hits[n - 1].location,
                hits[n - 1].score,
                hits[n - 1].text,
            )
            for n in numbers
        ]

    async def aclose(self) -> None:
        """Release models and stores."""
        await self.router.aclose()
        if self.tables is not None:
            await self.tables.aclose()
        close = getattr(self.retriever, "aclose", None)
        if close is not None:
            await close()
