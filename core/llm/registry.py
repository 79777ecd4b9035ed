"""LLM backends by name, and the router built from the settings over them.

A backend factory takes the ``llm`` settings and returns an :class:`~core.llm.base.LLMBackend`.
The built-ins register through the ``hearth.llm_backends`` entry points in ``pyproject.toml``, as
a third-party backend would: ``server`` and ``in_process`` serve ``llm.local.engine``, ``openai``
serves ``llm.remote``. A test's fake registers the same way::

    with LLM_BACKENDS.registered("in_process", lambda llm: FakeBackend(reply="hi")):
        router = build_router(settings.llm)   # llm.local.engine: in_process -> the fake
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

from core.llm.base import LLMBackend
from core.llm.config import REMOTE_BACKEND, LLMSettings
from core.llm.queue import LocalQueue
from core.llm.router import Router
from core.registry import Registry

LLMBackendFactory = Callable[[LLMSettings], LLMBackend]
LLM_BACKENDS: Registry[LLMBackendFactory] = Registry("LLM backend", "hearth.llm_backends")


@runtime_checkable
class Slotted(Protocol):
    """A backend that generates several answers at once (llama-server's parallel slots)."""

    @property
    def slots(self) -> int:
        """Generations run at the same time."""
        ...


def build_router(llm: LLMSettings) -> Router:
    """The router over the configured local engine and remote API, its queue sized to the engine's slots."""
    local = LLM_BACKENDS.get(llm.local.engine)(llm) if llm.local.enabled else None
    remote = LLM_BACKENDS.get(REMOTE_BACKEND)(llm) if llm.remote.base_url else None
    slots = local.slots if isinstance(local, Slotted) else 1
    queue = LocalQueue(llm.queue.max_depth, llm.queue.max_wait_s, capacity=slots)
    return Router(local=local, remote=remote, routing=llm.routing, queue=queue)
