"""Router fallback, first-token deadline, circuit breaker and the local queue."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from core.errors import AllBackendsFailed, BackendError, BackendUnavailable, QueueFull
from core.llm.base import Chunk, GenOptions, Message, Priority, Role, collect
from core.llm.config import RoutingSettings
from core.llm.fake import FakeBackend
from core.llm.queue import LocalQueue
from core.llm.router import Router

MESSAGES = [Message(Role.USER, "hello")]


def routing(**kw: object) -> RoutingSettings:
    return RoutingSettings(**kw)  # type: ignore[arg-type]


async def test_local_serves_when_healthy() -> None:
    local, remote = FakeBackend(reply="from local"), FakeBackend(reply="from remote", model_name="r")
    router = Router(local=local, remote=remote)
    text, final = await collect(router.stream(MESSAGES, GenOptions()))
    assert text == "from local"
    assert final.backend == "local" and final.model == "fake-model"
    assert remote.calls == []


async def test_falls_back_when_local_cannot_load() -> None:
    local = FakeBackend(error=BackendUnavailable("No model file at /x.gguf"))
    remote = FakeBackend(reply="from remote", model_name="gpt-x")
    router = Router(local=local, remote=remote)
    text, final = await collect(router.stream(MESSAGES, GenOptions()))
    assert (text, final.backend, final.model) == ("from remote", "remote", "gpt-x")


async def test_falls_back_when_local_misses_first_token_deadline() -> None:
    local = FakeBackend(reply="late", first_token_delay=5)
    remote = FakeBackend(reply="on time")
    router = Router(local=local, remote=remote, routing=routing(first_token_timeout_s=0.05))
    text, final = await collect(router.stream(MESSAGES, GenOptions()))
    assert text == "on time" and final.backend == "remote"
    assert local.cancelled == 1, "the slow local generation must be cancelled, not left running"
    assert not router.queue.busy


async def test_circuit_breaker_skips_a_dead_local_model_until_cooldown() -> None:
    now = [0.0]
    local = FakeBackend(error=BackendError("boom"))
    remote = FakeBackend(reply="remote")
    router = Router(
        local=local,
        remote=remote,
        routing=routing(breaker_failures=2, breaker_cooldown_s=30),
        clock=lambda: now[0],
    )
    for _ in range(2):
        await collect(router.stream(MESSAGES, GenOptions()))
    assert len(local.calls) == 2
    await collect(router.stream(MESSAGES, GenOptions()))
    assert len(local.calls) == 2, "breaker open: local not retried"
    now[0] = 31.0
    local.error = None
    _, final = await collect(router.stream(MESSAGES, GenOptions()))
    assert final.backend == "local" and len(local.calls) == 3


async def test_both_down_is_one_clear_error_naming_both() -> None:
    router = Router(
        local=FakeBackend(error=BackendUnavailable("No model file at /m.gguf")),
        remote=FakeBackend(error=BackendUnavailable("The remote API rejected the credentials (401)")),
    )
    with pytest.raises(AllBackendsFailed) as err:
        await collect(router.stream(MESSAGES, GenOptions()))
    message = str(err.value)
    assert "local" in message and "remote" in message and "hearth doctor" in message
    assert set(err.value.reasons) == {"local", "remote"}


async def test_nothing_configured_says_what_to_set() -> None:
    with pytest.raises(AllBackendsFailed, match="llm.remote.base_url"):
        await collect(Router(local=None, remote=None).stream(MESSAGES, GenOptions()))


async def test_queue_full_falls_back_to_remote() -> None:
    local = FakeBackend(reply="slow local", token_delay=0.2)
    remote = FakeBackend(reply="remote")
    router = Router(local=local, remote=remote, queue=LocalQueue(max_depth=1))
    results = await asyncio.gather(*(collect(router.stream(MESSAGES, GenOptions())) for _ in range(3)))
    backends = sorted(final.backend or "" for _, final in results)
    assert backends == ["local", "local", "remote"]


async def test_queue_orders_by_priority() -> None:
    queue = LocalQueue(max_depth=10)
    order: list[str] = []
    gate = asyncio.Event()

    async def holder() -> None:
        async with queue.slot(Priority.CHAT):
            await gate.wait()

    async def waiter(name: str, priority: Priority) -> None:
        async with queue.slot(priority):
            order.append(name)

    first = asyncio.create_task(holder())
    await asyncio.sleep(0)
    tasks = [
        asyncio.create_task(waiter("digest", Priority.DIGEST)),
        asyncio.create_task(waiter("chat", Priority.CHAT)),
        asyncio.create_task(waiter("editor", Priority.EDITOR)),
    ]
    await asyncio.sleep(0)
    assert queue.depth == 3
    gate.set()
    await asyncio.gather(first, *tasks)
    assert order == ["editor", "chat", "digest"]
    assert queue.depth == 0 and not queue.busy


async def test_queue_bound_raises_queue_full() -> None:
    queue = LocalQueue(max_depth=1)
    gate = asyncio.Event()

    async def hold() -> None:
        async with queue.slot():
            await gate.wait()

    async def wait_turn() -> None:
        async with queue.slot():
            pass

    holder = asyncio.create_task(hold())
    await asyncio.sleep(0)
    waiting = asyncio.create_task(wait_turn())
    await asyncio.sleep(0)
    with pytest.raises(QueueFull):
        async with queue.slot():
            pass
    gate.set()
    await asyncio.gather(holder, waiting)


async def test_cancelled_waiter_does_not_leak_the_slot() -> None:
    queue = LocalQueue(max_depth=5)
    gate = asyncio.Event()

    async def hold() -> None:
        async with queue.slot():
            await gate.wait()

    holder = asyncio.create_task(hold())
    await asyncio.sleep(0)

    async def wait_turn() -> None:
        async with queue.slot():
            pass

    waiting = asyncio.create_task(wait_turn())
    await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    gate.set()
    await holder
    assert not queue.busy and queue.depth == 0
    async with queue.slot():
        assert queue.busy


async def test_consumer_going_away_cancels_generation_and_frees_the_queue() -> None:
    local = FakeBackend(reply=" ".join(["word"] * 50), token_delay=0.01)
    router = Router(local=local, remote=None)
    stream = router.stream(MESSAGES, GenOptions())
    async for _chunk in stream:
        break
    await stream.aclose()  # type: ignore[attr-defined]
    assert local.cancelled == 1
    assert not router.queue.busy


class _DiesMidAnswer(FakeBackend):
    async def stream(self, messages, options):  # type: ignore[no-untyped-def, override]
        self.calls.append(None)  # type: ignore[arg-type]
        yield Chunk(text="partial")
        raise BackendError("the model crashed")


async def test_failure_after_the_first_token_is_reported_not_restarted_and_counts_for_the_breaker() -> None:
    local, remote = _DiesMidAnswer(), FakeBackend(reply="remote")
    router = Router(local=local, remote=remote, routing=routing(breaker_failures=1))
    seen: list[str] = []
    with pytest.raises(BackendError, match="crashed"):
        async for chunk in router.stream(MESSAGES, GenOptions()):
            seen.append(chunk.text)
    assert seen == ["partial"] and remote.calls == []
    assert router.breaker.is_open and not router.queue.busy


async def test_queue_with_n_slots_runs_n_at_once_then_hands_free_slots_by_priority() -> None:
    queue = LocalQueue(max_depth=8, capacity=3)
    gates = [asyncio.Event() for _ in range(3)]
    running: list[int] = []
    order: list[str] = []

    async def holder(i: int) -> None:
        async with queue.slot(Priority.DIGEST):
            running.append(i)
            await gates[i].wait()

    holders = [asyncio.create_task(holder(i)) for i in range(3)]
    await asyncio.sleep(0)
    assert running == [0, 1, 2] and queue.running == 3 and queue.busy and queue.depth == 0

    later = asyncio.Event()

    async def waiter(name: str, priority: Priority) -> None:
        async with queue.slot(priority):
            order.append(name)
            await later.wait()

    tasks = [
        asyncio.create_task(waiter("digest", Priority.DIGEST)),
        asyncio.create_task(waiter("chat", Priority.CHAT)),
        asyncio.create_task(waiter("editor", Priority.EDITOR)),
    ]
    await asyncio.sleep(0)
    assert queue.depth == 3
    gates[1].set()  # one slot frees: the editor gets it, the others keep waiting
    await asyncio.sleep(0.01)
    assert order == ["editor"] and queue.depth == 2 and queue.running == 3
    gates[0].set()
    gates[2].set()
    later.set()
    await asyncio.gather(*holders, *tasks)
    assert order == ["editor", "chat", "digest"]
    assert queue.running == 0 and not queue.busy


def test_router_built_from_settings_gives_the_queue_one_place_per_engine_slot(tmp_path: Path) -> None:
    from core.llm.registry import build_router
    from tests.fixtures.core import make_settings

    router = build_router(make_settings(tmp_path, llm={"local": {"parallel": 6}}).llm)
    assert router.local is not None and router.local.name == "llama_server" and router.queue.capacity == 6
    router = build_router(make_settings(tmp_path, llm={"local": {"engine": "in_process", "parallel": 6}}).llm)
    assert router.local is not None and router.local.name == "llama_cpp" and router.queue.capacity == 1
