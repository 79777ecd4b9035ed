"""The use cases every surface calls. Surfaces build a Request; this module does the rest.

::

    assistant = Assistant.from_settings(settings)
    answer = await assistant.ask(Request(text="How do I request leave?", user="alice", acl=frozenset({"public"})))
    async for event in assistant.ask_stream(request):   # Delta(text) … then the Answer
        ...
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, cast

from core.config import Settings
from core.contracts import Answer, Citation, Delta, Grounding, Hit, Request, Retriever
from core.grounding import NOT_FOUND, Grounder, Quote, citation_for, quote_block
from core.llm.base import Chunk, GenOptions, Usage
from core.llm.registry import build_router
from core.llm.router import Router
from core.prompts.registry import PromptRegistry, RenderedPrompt
from core.refusals import require_text

if TYPE_CHECKING:
    from core.code.service import CodeService
    from core.tables.service import TableService

log = logging.getLogger(__name__)

__all__ = ["NOT_FOUND", "NO_SOURCES", "Assistant", "Limits"]

NO_SOURCES = (
    "No document sources are configured, so this answer comes from the model alone, not from your "
    "docs: add sources to hearth.yaml and run 'hearth index'."
)
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
        self.grounder = Grounder(settings.retrieval)
        self._small_model: bool | None = None
        n_ctx = settings.llm.local.n_ctx
        budget_tokens = max(256, n_ctx - settings.llm.max_tokens - 64)
        self.limits = Limits(
            max_question_chars=max(200, budget_tokens * _CHARS_PER_TOKEN // 2),
            prompt_budget_chars=budget_tokens * _CHARS_PER_TOKEN,
        )

    @classmethod
    def from_settings(cls, settings: Settings, *, retriever: Retriever | None = None) -> Assistant:
        """Build the assistant with the backends and templates the settings describe."""
        return cls(settings, build_router(settings.llm), PromptRegistry(settings.prompts.dir), retriever)

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
            notices.append(NO_SOURCES)
            rendered = self.prompts.render("chat", question=question, history=history)
            async for event in self._generate(rendered, request, [], timings, notices, started):
                yield event
            return
        t0 = time.perf_counter()
        found = await self.retriever.search(question, acl=request.acl, k=self.settings.retrieval.top_k)
        hits = [h for h in found if h.score >= self.settings.retrieval.min_score]
        hits, dense = await self._dense_gate(question, request.acl, hits)
        timings["retrieval"] = (time.perf_counter() - t0) * 1000
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
        mode = self.grounding_mode(request)
        quotes: list[Quote] = []
        if mode != "off" and await self.quote_mode():
            if self.grounder.relevance(question, hits, dense) < self.settings.retrieval.min_relevance:
                # Nothing in the sources answers the question: a small model would only invent it.
                async for event in self._not_found(hits, mode, request, timings, notices, started):
                    yield event
                return
            quotes = self.grounder.quotes(question, hits)
        if quotes:
            numbers: dict[int, int] = {}
            for q in quotes:
                numbers.setdefault(q.source, len(numbers) + 1)
            excerpts = [
                {"number": numbers[q.source], "title": hits[q.source].title, "text": q.text} for q in quotes
            ]
            rendered = self.prompts.render(
                "answer_quote", question=question, quotes=excerpts, history=history
            )
            yield Delta(quote_block(quotes, numbers) + "\n\n")
        else:
            sources = [
                {"number": i, "title": h.title, "uri": h.uri, "location": h.location, "text": h.text}
                for i, h in enumerate(hits, 1)
            ]
            rendered = self.prompts.render("answer", question=question, sources=sources, history=history)
        async for event in self._generate(rendered, request, hits, timings, notices, started):
            if isinstance(event, Answer) and mode != "off":
                t1 = time.perf_counter()
                event.text, event.citations, event.grounding = self.grounder.finish(
                    event.text, hits, question, mode, quotes
                )
                timings["verify"] = (time.perf_counter() - t1) * 1000
            yield event

    def grounding_mode(self, request: Request) -> str:
        """How unsupported sentences are treated for ``request`` ("drop", "mark" or "off")."""
        mode = request.grounding or self.settings.retrieval.grounding
        return mode if mode in {"drop", "mark", "off"} else "drop"

    async def quote_mode(self) -> bool:
        """Whether answers lead with quoted source sentences (``retrieval.quote``; see there)."""
        choice = self.settings.retrieval.quote
        if choice != "auto":
            return choice == "always"
        if self._small_model is None:
            self._small_model = await asyncio.to_thread(self._local_model_is_small)
        return self._small_model

    def _local_model_is_small(self) -> bool:
        """A local llama.cpp model without a chat template, or a file below ``retrieval.quote_below_mb``."""
        local = self.router.local
        cfg = self.settings.llm.local
        if (
            local is None
            or not cfg.enabled
            or getattr(local, "name", "") not in {"llama_server", "llama_cpp"}
        ):
            return False
        from core.llm.gguf import gguf_has_key
        from core.llm.llama_cpp import bundled_model_path

        try:
            path = cfg.model_path or bundled_model_path()
            size_mb = path.stat().st_size / 1e6
        except Exception:  # noqa: BLE001 - no model file: the engine reports that; answer without quotes
            log.debug("could not size the local model for quote mode", exc_info=True)
            return False
        base = cfg.prompt_format == "completion" or (
            cfg.prompt_format == "auto" and not gguf_has_key(path, "tokenizer.chat_template")
        )
        return base or size_mb < self.settings.retrieval.quote_below_mb

    async def _dense_gate(
        self, question: str, acl: frozenset[str] | None, hits: list[Hit]
    ) -> tuple[list[Hit], float | None]:
        """Hybrid hits the dense search does not rank above ``retrieval.min_similarity`` are dropped.

        Keyword matches used to bypass the cut-off in hybrid mode, so a question about an absent
        topic always found "sources". Returns the hits kept and the best dense similarity (None
        when the retriever has no dense search).
        """
        retriever = self.retriever
        mode = getattr(retriever, "mode", None)
        if mode == "dense":
            return hits, max((h.score for h in hits), default=0.0)
        search = getattr(retriever, "search", None)
        if mode != "hybrid" or search is None or "mode" not in inspect.signature(search).parameters:
            return hits, None
        from core.retrieval.store import hybrid_depth

        dense_search = cast(Callable[..., Awaitable[Sequence[Hit]]], search)
        # As deep as the hybrid query's own dense half: a hit missing here came from keywords alone.
        depth = hybrid_depth(self.settings.retrieval.top_k)
        dense = await dense_search(question, acl=acl, k=depth, mode="dense")
        scores = {h.chunk_id: h.score for h in dense}
        if self.settings.retrieval.min_similarity > 0:
            hits = [h for h in hits if h.chunk_id in scores]
        return hits, max(scores.values(), default=0.0)

    async def _not_found(
        self,
        hits: Sequence[Hit],
        mode: str,
        request: Request,
        timings: dict[str, float],
        notices: list[str],
        started: float,
    ) -> AsyncIterator[Delta | Answer]:
        """The not-found answer with the closest sources, without asking the model."""
        timings["total"] = (time.perf_counter() - started) * 1000
        closest = [citation_for(i, h) for i, h in enumerate(hits[:3], 1)]
        yield Delta(NOT_FOUND)
        yield Answer(
            NOT_FOUND, closest, "none", "", Usage(), timings, notices, request.request_id,
            grounding=Grounding(mode, [], not_found=True),
        )  # fmt: skip

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
        return [citation_for(n, hits[n - 1]) for n in numbers]

    async def aclose(self) -> None:
        """Release models and stores."""
        await self.router.aclose()
        if self.tables is not None:
            await self.tables.aclose()
        close = getattr(self.retriever, "aclose", None)
        if close is not None:
            await close()
