"""Local first, remote as fallback.

The router tries backends in ``llm.routing.order``. It moves on from the local model when it
cannot load, errors before its first token, misses the first-token deadline, or its queue is
full; a circuit breaker skips a local model that keeps failing for ``breaker_cooldown_s``.
Once tokens have reached the asker, a failure is reported rather than silently restarted
elsewhere. Every final chunk says which backend ("local"/"remote") and model served it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass

from core import metrics
from core.errors import AllBackendsFailed, BackendError, BackendTimeout, BackendUnavailable, QueueFull
from core.llm.base import Chunk, GenOptions, LLMBackend, Message
from core.llm.config import RoutingSettings
from core.llm.queue import LocalQueue

log = logging.getLogger(__name__)


@dataclass
class CircuitBreaker:
    """Opens after ``failures`` consecutive errors and stays open for ``cooldown_s``."""

    failures: int = 3
    cooldown_s: float = 60.0
    clock: Callable[[], float] = time.monotonic
    _count: int = 0
    _open_until: float = 0.0

    @property
    def is_open(self) -> bool:
        """Whether calls should skip the backend now."""
        return self.clock() < self._open_until

    def record_success(self) -> None:
        """Close the breaker."""
        self._count = 0
        self._open_until = 0.0

    def record_failure(self, *, fatal: bool = False) -> None:
        """Count a failure; ``fatal`` (e.g. the model cannot load) opens the breaker at once."""
        self._count += 1
        if fatal or self._count >= self.failures:
            self._open_until = self.clock() + self.cooldown_s


class Router:
    """Routes each generation to the first backend that can serve it."""

    def __init__(
        self,
        *,
        local: LLMBackend | None,
        remote: LLMBackend | None,
        routing: RoutingSettings | None = None,
        queue: LocalQueue | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.routing = routing or RoutingSettings()
        self.backends: dict[str, LLMBackend] = {}
        if local is not None:
            self.backends["local"] = local
        if remote is not None:
            self.backends["remote"] = remote
        self.queue = queue or LocalQueue()
        self.breaker = CircuitBreaker(self.routing.breaker_failures, self.routing.breaker_cooldown_s, clock)

    @property
    def local(self) -> LLMBackend | None:
        """The local backend, if configured."""
        return self.backends.get("local")

    async def stream(self, messages: Sequence[Message], options: GenOptions) -> AsyncIterator[Chunk]:
        """Stream from the first backend that produces a token."""
        reasons: dict[str, BaseException] = {}
        for label in self.routing.order:
            backend = self.backends.get(label)
            if backend is None:
                continue
            if label == "local" and self.breaker.is_open:
                reasons[label] = BackendUnavailable("the local model failed repeatedly and is paused")
                metrics.FALLBACKS.labels(label, "circuit_open").inc()
                continue
            if options.prompt_parts is not None and not getattr(backend, "raw_prompts", False):
                reasons[label] = BackendUnavailable(f"the {label} model does not take completion prompts")
                continue
            async with contextlib.AsyncExitStack() as stack:
                try:
                    if label == "local":
                        await stack.enter_async_context(self.queue.slot(options.priority))
                    agen = backend.stream(messages, options)
                    stack.push_async_callback(agen.aclose)  # type: ignore[attr-defined]
                    first = await asyncio.wait_for(anext(agen), self.routing.first_token_timeout_s)
                except (BackendError, TimeoutError, StopAsyncIteration) as exc:
                    reason = self._failure(label, exc)
                    reasons[label] = reason
                    log.warning("backend %s failed before its first token: %s", label, reason)
                    continue
                yield self._label(first, label)
                try:
                    async for chunk in agen:
                        yield self._label(chunk, label)
                except BackendError:
                    # Tokens already reached the asker, so no silent restart elsewhere; but a local
                    # model that dies mid-answer still counts towards the breaker.
                    metrics.FALLBACKS.labels(label, "mid_stream").inc()
                    if label == "local":
                        self.breaker.record_failure()
                    raise
                if label == "local":
                    self.breaker.record_success()
                return
        raise AllBackendsFailed(_all_failed_message(reasons), reasons)

    def _failure(self, label: str, exc: BaseException) -> BaseException:
        if isinstance(exc, TimeoutError):
            exc = BackendTimeout(f"no first token within {self.routing.first_token_timeout_s:.0f}s")
            kind = "first_token_timeout"
        elif isinstance(exc, StopAsyncIteration):
            exc = BackendError("the backend ended without output")
            kind = "empty"
        elif isinstance(exc, QueueFull):
            kind = "queue_full"
        elif isinstance(exc, BackendUnavailable):
            kind = "unavailable"
        else:
            kind = "error"
        metrics.FALLBACKS.labels(label, kind).inc()
        if label == "local" and kind != "queue_full":
            self.breaker.record_failure(fatal=kind == "unavailable")
        return exc

    @staticmethod
    def _label(chunk: Chunk, label: str) -> Chunk:
        chunk.backend = label
        return chunk

    async def aclose(self) -> None:
        """Close every backend."""
        for backend in self.backends.values():
            await backend.aclose()


def _all_failed_message(reasons: dict[str, BaseException]) -> str:
    if not reasons:
        return (
            "No model backend is configured — set llm.local or llm.remote.base_url, then run 'hearth doctor'."
        )
    detail = "; ".join(f"{label}: {exc}" for label, exc in reasons.items())
    return f"No model could answer right now ({detail}). Try again shortly, or run 'hearth doctor'."
