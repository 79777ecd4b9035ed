"""A bounded priority queue in front of the local model's slots.

The engine decodes ``capacity`` answers at once (llama-server's parallel slots; 1 for the
in-process engine). When every slot is taken, the next free one goes to the editor before chat,
chat before digests; within a priority, first come first served. A full queue raises
:class:`QueueFull` at once so the router can fall back instead of making the asker wait::

    async with queue.slot(Priority.EDITOR):
        ...  # one of the local model's slots is ours
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
    """Grants ``capacity`` concurrent slots on one resource in priority order, with a bound on waiters."""

    def __init__(self, max_depth: int = 32, max_wait_s: float = 120.0, capacity: int = 1) -> None:
        self.max_depth = max_depth
        self.max_wait_s = max_wait_s
        self.capacity = max(1, capacity)
        self._running = 0
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
        """Whether every slot is taken now."""
        return self._running >= self.capacity

    @property
    def running(self) -> int:
        """Generations holding a slot now."""
        return self._running

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
        if self._running < self.capacity and not self.depth:
            self._running += 1
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
                fut.set_result(None)  # the slot moves to that waiter; _running is unchanged
                metrics.QUEUE_DEPTH.set(self.depth)
                return
        self._running -= 1
        metrics.QUEUE_DEPTH.set(0)
