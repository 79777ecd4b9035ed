"""The one front door: every surface hands the core an ``Ask`` and renders what comes back.

Slack, DingTalk, the REST API and the editor each translate a platform event into an ``Ask`` (who,
where, what kind) and the events into platform messages. Everything between happens here, once:
de-duplication, the empty / too-long / binary checks, the per-surface rate limit, "is the engine
ready?", "is this capability configured?", running the use case, turning any failure into a
``Refusal``, and telling the observers (audit, metrics) how it ended::

    intake = Intake(settings, engine=lambda: assistant, db=db, observers=[audit, metrics_observer])
    async for event in intake.run(Ask(Kind.ASK, request, once="Ev0123")):
        ...   # Delta (streamed text) … then exactly one Answer or one Refusal

A ``Refusal`` with reason ``DUPLICATE`` means the platform delivered the message again; surfaces
say nothing. No exception leaves :meth:`Intake.run` except cancellation.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Protocol

from core.code.completion import Completer
from core.config import Settings
from core.contracts import Answer, Ask, Code, Delta, Kind, Outcome, Prompt, Request
from core.errors import HearthError
from core.ratelimit import RateLimiter
from core.refusals import Reason, Refusal, check_text, refusal_for

if TYPE_CHECKING:
    from core.assistant import Assistant

__all__ = ["Ask", "Claims", "Code", "Event", "Intake", "Kind", "Observer", "Outcome", "Prompt"]

log = logging.getLogger(__name__)

Event = Delta | Answer | Refusal
# Refusals that are about the request itself (the asker can fix them); the rest are the server's.
_ASKERS = {
    Reason.EMPTY,
    Reason.EMPTY_CODE,
    Reason.TOO_LONG,
    Reason.BINARY,
    Reason.RATE_LIMITED,
    Reason.BAD_INPUT,
    Reason.SQL_REJECTED,
    Reason.TABLES_UNAVAILABLE,
    Reason.TABLES_NO_ACCESS,
    Reason.TABLE_NO_SQL,
    Reason.CODE_UNAVAILABLE,
    Reason.COMPLETION_UNAVAILABLE,
}


class Observer(Protocol):
    """Told how every ask ended (the audit log, the metrics)."""

    def observe(self, outcome: Outcome) -> None:
        """Record ``outcome``; must not block or raise."""
        ...


class Claims(Protocol):
    """Who is answering which platform message (``core.db.Database``): exactly-once answers."""

    def claim(self, surface: str, event_id: str, *, lease_s: float = ...) -> Awaitable[bool]:
        """Take ``event_id`` to answer it; False when it is answered or a live process is on it."""
        ...

    def renew(self, surface: str, event_id: str, *, lease_s: float = ...) -> Awaitable[bool]:
        """Keep a claim alive while its answer is still being written."""
        ...

    def finish(self, surface: str, event_id: str) -> Awaitable[bool]:
        """The answer is posted: later deliveries are duplicates."""
        ...

    def release(self, surface: str, event_id: str) -> Awaitable[bool]:
        """Give the claim up unanswered, so a retry may answer it."""
        ...


@dataclass
class SurfaceLimits:
    """A surface's own caps: questions per user per minute and characters per question."""

    per_minute: int | None = None
    max_chars: int | None = None
    limiter: RateLimiter | None = field(default=None, repr=False)


class Intake:
    """Checks, runs and observes every question, whichever surface it came from."""

    def __init__(
        self,
        settings: Settings,
        engine: Callable[[], Assistant | None],
        *,
        db: Claims | None = None,
        claim_lease_s: float = 60.0,
        observers: Iterable[Observer] = (),
        not_ready: Callable[[], str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self._engine = engine
        self._not_ready = not_ready or (lambda: "the engine is still starting")
        self.db = db
        self.claim_lease_s = claim_lease_s
        self.observers = list(observers)
        self._surfaces = {
            "slack": SurfaceLimits(settings.slack.rate_limit_per_minute, settings.slack.max_question_chars),
            "dingtalk": SurfaceLimits(
                settings.dingtalk.rate_limit_per_minute, settings.dingtalk.max_question_chars
            ),
        }
        for limits in self._surfaces.values():
            if limits.per_minute:
                limits.limiter = RateLimiter(limits.per_minute, clock=clock)

    @property
    def engine(self) -> Assistant | None:
        """The assistant, or None while `hearth serve` is still building it."""
        return self._engine()

    def limit_for(self, surface: str) -> int:
        """The most characters a question from ``surface`` may have (the model's budget caps all)."""
        engine = self.engine
        limit = engine.limits.max_question_chars if engine is not None else math.inf
        own = self._surfaces.get(surface, SurfaceLimits()).max_chars
        return int(min(limit, own or math.inf, 10**9))

    async def run(self, ask: Ask) -> AsyncIterator[Event]:
        """Stream the answer to ``ask``: deltas, then one Answer or one Refusal (claimed throughout)."""
        async with self.turn(ask) as refusal:
            if refusal is not None:
                yield refusal
                return
            async for event in self.answer(ask):
                yield event

    @contextlib.asynccontextmanager
    async def turn(self, ask: Ask) -> AsyncIterator[Refusal | None]:
        """Admit ``ask`` and hold its claim while the surface answers and posts; None: go ahead.

        Exactly once: the platform message (``ask.once``) is claimed before any work and finished
        when the block ends, so every later delivery is a duplicate; if the block fails the claim is
        released and a retry answers it; if the process dies, the claim's holder is gone and the
        next delivery takes it over. Surfaces that show something the moment a question is accepted
        (Slack's placeholder) call :meth:`answer` inside the block; the rest call :meth:`run`.
        """
        claimed = False
        if ask.once and self.db is not None:
            claimed = await self.db.claim(ask.request.surface, ask.once, lease_s=self.claim_lease_s)
            if not claimed:
                log.info(
                    "%s: %s was already answered, or is being answered (a retry or a duplicate)",
                    ask.request.surface,
                    ask.once,
                )
                yield Refusal(Reason.DUPLICATE)
                return
        beat = asyncio.create_task(self._keep(ask)) if claimed else None
        try:
            yield self.admit(ask)
        except BaseException:
            if claimed:
                await self._settle(ask, finished=False)
            raise
        else:
            if claimed:
                await self._settle(ask, finished=True)
        finally:
            if beat is not None:
                beat.cancel()

    async def _keep(self, ask: Ask) -> None:
        """Renew the claim while the answer is written (a long answer outlives one lease)."""
        assert self.db is not None and ask.once
        while True:
            await asyncio.sleep(self.claim_lease_s / 3)
            try:
                await self.db.renew(ask.request.surface, ask.once, lease_s=self.claim_lease_s)
            except Exception:  # noqa: BLE001 — the database may blink; the next beat tries again
                log.warning("could not renew the claim on %s", ask.once, exc_info=True)

    async def _settle(self, ask: Ask, *, finished: bool) -> None:
        assert self.db is not None and ask.once
        try:
            if finished:
                await self.db.finish(ask.request.surface, ask.once)
            else:
                await self.db.release(ask.request.surface, ask.once)
        except Exception:  # noqa: BLE001 — the lease still ends the claim; the answer is not lost
            log.warning("could not settle the claim on %s", ask.once, exc_info=True)

    def admit(self, ask: Ask) -> Refusal | None:
        """Check ``ask`` before any work (None: go ahead and call :meth:`answer`); observed when refused."""
        refusal = self.check(ask)
        if refusal is not None:
            log.info("%s %s refused: %s", ask.request.surface, ask.kind.value, refusal.reason.value)
            self._tell(Outcome(ask, "refused", refusal=refusal))
        return refusal

    async def answer(self, ask: Ask) -> AsyncGenerator[Event, None]:
        """Run an admitted ``ask``: deltas, then its Answer, or a Refusal when it fails on the way."""
        started = time.perf_counter()
        outcome = Outcome(ask, "cancelled")
        try:
            async for event in self._use_case(ask):
                if isinstance(event, Answer):
                    outcome.status, outcome.answer = "ok", event
                yield event
            if outcome.answer is None:
                raise HearthError("the answer stream ended without an answer")
        except HearthError as exc:
            refusal = refusal_for(exc)
            outcome.refusal = refusal
            outcome.status = "refused" if refusal.reason in _ASKERS else "error"
            level = logging.INFO if outcome.status == "refused" else logging.WARNING
            if ask.kind is Kind.COMPLETE:
                level = logging.DEBUG  # one per keystroke: the editor logs a failing suggestion once
            log.log(
                level,
                "%s %s %s refused (%s): %s",
                ask.request.surface,
                ask.kind.value,
                ask.request.request_id,
                refusal.reason.value,
                exc,
            )
            yield refusal
        except Exception:
            log.exception("%s %s %s failed", ask.request.surface, ask.kind.value, ask.request.request_id)
            outcome.status, outcome.refusal = "error", Refusal(Reason.ERROR, {}, "internal error")
            yield outcome.refusal
        finally:
            outcome.duration_ms = (time.perf_counter() - started) * 1000
            self._tell(outcome)

    def not_ready(self) -> Refusal:
        """The refusal while the engine is not built yet (or failed to build)."""
        return Refusal(Reason.NOT_READY, {"reason": self._not_ready()})

    def check(self, ask: Ask) -> Refusal | None:
        """The refusal for ``ask`` before any work (None: go ahead). Takes one rate-limit token."""
        request = ask.request
        if ask.completion is not None:
            around = ask.completion.prefix + ask.completion.suffix
            if not around.strip():
                return Refusal(Reason.EMPTY_CODE)
            if "\x00" in around:
                return Refusal(Reason.BINARY)
        elif ask.code is not None:
            if not ask.code.code.strip():
                return Refusal(Reason.EMPTY_CODE)
            if "\x00" in ask.code.code:
                return Refusal(Reason.BINARY)
        elif (refused := check_text(request.text, self.limit_for(request.surface))) is not None:
            return refused
        limiter = self._surfaces.get(request.surface, SurfaceLimits()).limiter
        wait = limiter.check(request.user) if limiter is not None else 0.0
        if wait > 0:
            return Refusal(Reason.RATE_LIMITED, {"seconds": max(1.0, wait)})
        engine = self.engine
        if engine is None:
            return self.not_ready()
        if ask.kind is Kind.TABLES and engine.tables is None:
            return Refusal(Reason.TABLES_UNAVAILABLE)
        if ask.kind in (Kind.GENERATE, Kind.TESTS) and engine.code is None:
            return Refusal(Reason.CODE_UNAVAILABLE)
        if ask.kind is Kind.COMPLETE:
            if not self.settings.lsp.completion.enabled:
                return Refusal(Reason.CODE_UNAVAILABLE)  # the operator turned suggestions off (a busy GPU)
            if not _takes_completion_prompts(engine):
                # How the server is set up (a chat-only remote API), not a passing outage: say so
                # once, plainly, rather than a "model down" on every keystroke.
                return Refusal(Reason.COMPLETION_UNAVAILABLE)
        return None

    async def _use_case(self, ask: Ask) -> AsyncIterator[Delta | Answer]:
        engine = self.engine
        assert engine is not None
        audience, asker = ask.audience, ask.request
        if audience is not None:
            # Everyone who will see the answer must be able to read every source it uses.
            ask = replace(ask, request=replace(ask.request, acl=audience))
        async for event in _USE_CASES[ask.kind](engine, ask):
            if isinstance(event, Answer) and audience is not None and ask.kind is Kind.ASK:
                event.withheld = await self._withheld(engine, asker.text, asker=asker, audience=audience)
            yield event

    @staticmethod
    async def _withheld(engine: Assistant, question: str, *, asker: Request, audience: frozenset[str]) -> int:
        """How many documents the asker's own grants would have added (never their text).

        One search as the asker; a hit counts when its source's ACL shares no token with the audience.
        """
        retriever = engine.retriever
        if retriever is None:
            return 0
        retrieval = engine.settings.retrieval
        acl_of = {s.name: frozenset(s.acl) for s in engine.settings.sources}
        try:
            mine = await retriever.search(question, acl=asker.acl, k=retrieval.top_k)
        except HearthError:
            return 0  # only an offer: the answer itself stands
        hidden = {
            h.doc_id
            for h in mine
            if h.score >= retrieval.min_score and not acl_of.get(h.source, frozenset()) & audience
        }
        return len(hidden)

    def _tell(self, outcome: Outcome) -> None:
        for observer in self.observers:
            try:
                observer.observe(outcome)
            except Exception:  # noqa: BLE001 — a broken observer must not cost the asker the answer
                log.exception("observer %r failed", observer)


def _takes_completion_prompts(engine: Assistant) -> bool:
    """Whether a model the router may use takes a verbatim completion prompt (a chat API cannot)."""
    router = engine.router
    return any(getattr(router.backends.get(label), "raw_prompts", False) for label in router.routing.order)


# --- the use cases, one per kind ---------------------------------------------------------------
def _ask(engine: Assistant, ask: Ask) -> AsyncIterator[Delta | Answer]:
    return engine.ask_stream(ask.request)


async def _tables(engine: Assistant, ask: Ask) -> AsyncIterator[Delta | Answer]:
    assert engine.tables is not None
    request = ask.request
    yield await engine.tables.ask(
        request.text,
        source=ask.source,
        acl=request.acl,
        priority=request.priority,
        request_id=request.request_id,
    )


def _explain(engine: Assistant, ask: Ask) -> AsyncIterator[Delta | Answer]:
    c = _code(ask)
    if engine.code is not None:
        return engine.code.explain_stream(c, request=ask.request)
    return engine.complete_stream(
        "explain", ask.request, code=c.code, language=c.language, path=c.path, context=c.context
    )


def _generate(engine: Assistant, ask: Ask) -> AsyncIterator[Delta | Answer]:
    assert engine.code is not None
    return engine.code.generate_stream(_code(ask), request=ask.request)


def _tests(engine: Assistant, ask: Ask) -> AsyncIterator[Delta | Answer]:
    assert engine.code is not None
    return engine.code.tests_stream(_code(ask), request=ask.request)


def _complete(engine: Assistant, ask: Ask) -> AsyncIterator[Delta | Answer]:
    if ask.completion is None:
        raise HearthError(
            "an inline completion needs the text around the cursor", key=Reason.EMPTY_CODE.value
        )
    return Completer.of(engine).stream(ask.completion, request=ask.request)


def _digest(engine: Assistant, ask: Ask) -> AsyncIterator[Delta | Answer]:
    p = ask.prompt
    if p is None:
        raise HearthError("a digest summary needs its template")
    return engine.complete_stream(p.template, ask.request, max_tokens=p.max_tokens, **p.variables)


def _code(ask: Ask) -> Code:
    if ask.code is None:
        raise HearthError(f"{ask.kind.value} needs code", key=Reason.EMPTY_CODE.value)
    return ask.code


_USE_CASES: dict[Kind, Callable[[Assistant, Ask], AsyncIterator[Delta | Answer]]] = {
    Kind.ASK: _ask,
    Kind.TABLES: _tables,
    Kind.EXPLAIN: _explain,
    Kind.GENERATE: _generate,
    Kind.TESTS: _tests,
    Kind.DIGEST: _digest,
    Kind.COMPLETE: _complete,
}
