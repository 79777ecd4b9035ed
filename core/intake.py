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

import logging
import math
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from core.config import Settings
from core.contracts import Answer, Ask, Code, Delta, Kind, Outcome, Prompt
from core.errors import HearthError
from core.ratelimit import RateLimiter
from core.refusals import Reason, Refusal, check_text, refusal_for

if TYPE_CHECKING:
    from core.assistant import Assistant

__all__ = ["Ask", "Code", "Event", "FirstTime", "Intake", "Kind", "Observer", "Outcome", "Prompt"]

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
}


class Observer(Protocol):
    """Told how every ask ended (the audit log, the metrics)."""

    def observe(self, outcome: Outcome) -> None:
        """Record ``outcome``; must not block or raise."""
        ...


class FirstTime(Protocol):
    """The de-duplication store (``core.db.Database``)."""

    def first_time(self, surface: str, key: str) -> Awaitable[bool]:
        """True the first time ``key`` is seen on ``surface``."""
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
        db: FirstTime | None = None,
        observers: Iterable[Observer] = (),
        not_ready: Callable[[], str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self._engine = engine
        self._not_ready = not_ready or (lambda: "the engine is still starting")
        self.db = db
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
        """Stream the answer to ``ask``: deltas, then one Answer or one Refusal."""
        refusal = await self.admit(ask)
        if refusal is not None:
            yield refusal
            return
        async for event in self.answer(ask):
            yield event

    async def admit(self, ask: Ask) -> Refusal | None:
        """De-duplicate and check ``ask`` before any work; None: go ahead and call :meth:`answer`.

        Surfaces that show something the moment a question is accepted (Slack's placeholder
        message, REST's status line) call this and :meth:`answer` apart; the rest call :meth:`run`.
        """
        if ask.once and self.db is not None and not await self.db.first_time(ask.request.surface, ask.once):
            log.info("%s: %s was already answered (a retry or a duplicate)", ask.request.surface, ask.once)
            return Refusal(Reason.DUPLICATE)
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
            log.log(
                logging.INFO if outcome.status == "refused" else logging.WARNING,
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
        if ask.code is not None:
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
        return None

    def _use_case(self, ask: Ask) -> AsyncIterator[Delta | Answer]:
        engine = self.engine
        assert engine is not None
        return _USE_CASES[ask.kind](engine, ask)

    def _tell(self, outcome: Outcome) -> None:
        for observer in self.observers:
            try:
                observer.observe(outcome)
            except Exception:  # noqa: BLE001 — a broken observer must not cost the asker the answer
                log.exception("observer %r failed", observer)


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
}
