"""A bounded priority queue in front of the local model (one generation at a time).

Editor requests run before chat, chat before digests; within a priority, first come first
served. A full queue raises :class:`QueueFull` at once so the router can fall back instead of
making the asker wait::

    async with queue.slot(Priority.EDITOR):
        ...  # exclusive use of the local model
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from core import metrics
from core.errors import BackendTimeout, QueueFull
from core.llm.base import Priority


class LocalQueue:
    """Grants exclusive slots on one resource in priority order, with a bound on waiters."""

    def __init__(self, max_depth: int = 32, max_wait_s: float = 120.0) -> None:
        self.max_depth = max_depth
        self.max_wait_s = max_wait_s
        self._busy = False
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()
        self.total_wait_s = 0.0
        self.granted = 0
        self.last_wait_s = 0.0

    @property
    def depth(self) -> int:
        """Requests currently waiting (not counting the one running)."""
        return sum(1 for *_, fut in self._waiters if not fut.done())

    @property
    def busy(self) -> bool:
        """Whether a generation holds the slot now."""
        return self._busy

    @asynccontextmanager
    async def slot(self, priority: Priority = Priority.CHAT) -> AsyncIterator[None]:
        """Hold the resource for the duration of the block."""
        started = time.monotonic()
        await self._acquire(priority)
        waited = time.monotonic() - started
        self.last_wait_s = waited
        self.total_wait_s += waited
        self.granted += 1
        metrics.QUEUE_WAIT.observe(waited)
        try:
            yield
        finally:
            self._release()

    async def _acquire(self, priority: Priority) -> None:
        if not self._busy and not self._waiters:
            self._busy = True
            return
        if self.depth >= self.max_depth:
            raise QueueFull(f"The local model's queue is full ({self.max_depth} waiting).")
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (int(priority), next(self._seq), fut))
        metrics.QUEUE_DEPTH.set(self.depth)
        try:
            await asyncio.wait_for(asyncio.shield(fut), self.max_wait_s)
        except BaseException as exc:
            if fut.done() and not fut.cancelled():
                # The slot was handed to us just as we gave up: pass it on.
                self._release()
            else:
                fut.cancel()
            self._drop_cancelled()
            if isinstance(exc, TimeoutError):
                raise BackendTimeout(
                    f"Waited {self.max_wait_s:.0f}s for the local model without getting a turn."
                ) from exc
            raise
        finally:
            metrics.QUEUE_DEPTH.set(self.depth)

    def _drop_cancelled(self) -> None:
        self._waiters = [w for w in self._waiters if not w[2].done()]
        heapq.heapify(self._waiters)

    def _release(self) -> None:
        while self._waiters:
            _, _, fut = heapq.heappop(self._waiters)
            if not fut.done():
                fut.set_result(None)  # ownership moves to that waiter; _busy stays True
                metrics.QUEUE_DEPTH.set(self.depth)
                return
        self._busy = False
        metrics.QUEUE_DEPTH.set(0)
