"""Start-up with broken dependencies: the app still serves, /readyz names the reason, and it recovers."""

from __future__ import annotations

import asyncio
import socket
import threading
from pathlib import Path
from typing import Any

import pytest

import server.app as app_module
from core.assistant import Assistant
from core.llm.fake import FakeBackend
from core.llm.router import Router
from server.app import create_app
from server.auth import TOKENS
from tests.fixtures.core import make_settings


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_engine_failing_at_start_is_retried_without_a_crash(
    aiohttp_client: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings(tmp_path)
    attempts: list[int] = []
    release = threading.Event()  # holds the retry until the "not ready" half has been checked

    def flaky_build(s: Any, reranker: Any = None) -> Assistant:
        attempts.append(1)
        if len(attempts) == 1:
            raise RuntimeError("Qdrant at http://qdrant:6333 refused the connection")
        release.wait(30)
        return Assistant(s, Router(local=FakeBackend(), remote=None))

    monkeypatch.setattr(app_module, "build_assistant", flaky_build)
    monkeypatch.setattr(app_module, "RETRY_START_S", 0.05)
    client = await aiohttp_client(create_app(settings))
    _, token = await client.app[TOKENS].create("alice", [])
    try:
        body = await (await client.get("/readyz")).json()
        assert not body["checks"]["assistant"]["ok"]
        assert "refused the connection" in body["checks"]["assistant"]["detail"]
        resp = await client.post(
            "/v1/ask", json={"question": "x"}, headers={"Authorization": f"Bearer {token}"}
        )
        assert resp.status == 503 and resp.headers["Retry-After"]
    finally:
        release.set()
    for _ in range(200):
        if len(attempts) >= 2 and client.app.get(app_module.ASSISTANT) is not None:
            break
        await asyncio.sleep(0.01)
    resp = await client.post("/v1/ask", json={"question": "x"}, headers={"Authorization": f"Bearer {token}"})
    assert resp.status == 200, await resp.text()
    assert (await client.get("/readyz")).status == 200


async def test_qdrant_server_down_is_the_readyz_reason(aiohttp_client: Any, tmp_path: Path) -> None:
    port = closed_port()
    settings = make_settings(tmp_path, store={"url": f"http://127.0.0.1:{port}"})
    assistant = Assistant(settings, Router(local=FakeBackend(), remote=None))
    client = await aiohttp_client(create_app(settings, assistant=assistant))
    resp = await client.get("/readyz")
    body = await resp.json()
    assert resp.status == 503
    assert not body["checks"]["store"]["ok"] and f"127.0.0.1:{port}" in body["checks"]["store"]["detail"]
    assert body["checks"]["database"]["ok"] and body["checks"]["model"]["ok"]
    assert (await client.get("/healthz")).status == 200


async def test_missing_model_file_without_remote_is_not_ready(aiohttp_client: Any, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, llm={"local": {"model_path": str(tmp_path / "missing.gguf")}})
    from core.llm.registry import build_router

    client = await aiohttp_client(
        create_app(settings, assistant=Assistant(settings, build_router(settings.llm)))
    )
    body = await (await client.get("/readyz")).json()
    assert not body["checks"]["model"]["ok"] and "missing.gguf" in body["checks"]["model"]["detail"]


async def test_listens_after_the_model_load_and_reports_a_load_failure(
    aiohttp_client: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loads: list[int] = []

    class FailingLoad(FakeBackend):
        loaded = False

        async def load(self) -> None:
            loads.append(1)
            raise RuntimeError("out of memory while loading")

    settings = make_settings(tmp_path)
    monkeypatch.setattr(
        app_module, "build_assistant", lambda s, _r=None: Assistant(s, Router(local=FailingLoad(), remote=None))
    )
    client = await aiohttp_client(create_app(settings))
    assert loads == [1]  # the load was attempted before the server took requests
    body = await (await client.get("/readyz")).json()
    assert not body["checks"]["model"]["ok"] and "out of memory" in body["checks"]["model"]["detail"]
    assert body["checks"]["assistant"]["ok"]


async def test_readyz_says_loading_while_the_model_loads(aiohttp_client: Any, tmp_path: Path) -> None:
    from server.state import LIFECYCLE

    class NotLoaded(FakeBackend):
        loaded = False

    settings = make_settings(tmp_path)
    client = await aiohttp_client(
        create_app(settings, assistant=Assistant(settings, Router(local=NotLoaded(), remote=None)))
    )
    client.app[LIFECYCLE].model_loading = True
    body = await (await client.get("/readyz")).json()
    assert not body["checks"]["model"]["ok"] and "loading" in body["checks"]["model"]["detail"]


class _RecordingRetriever:
    """A retriever that records searches (the real one loads the embedder on its first search)."""

    def __init__(self) -> None:
        self.queries: list[str] = []

    async def search(self, query: str, *, acl: frozenset[str] | None, k: int, mode: Any = None) -> list[Any]:
        self.queries.append(query)
        return []

    async def aclose(self) -> None:
        return None


async def test_readyz_turns_green_only_after_the_warm_up(
    aiohttp_client: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first question after /readyz is green must not pay the embedder's or the model's start-up."""
    settings = make_settings(tmp_path)
    backend = FakeBackend()
    retriever = _RecordingRetriever()
    seen_at_ready: list[tuple[int, int]] = []

    def build(s: Any, reranker: Any = None) -> Assistant:
        return Assistant(s, Router(local=backend, remote=None), retriever=retriever)  # type: ignore[arg-type]

    monkeypatch.setattr(app_module, "build_assistant", build)
    client = await aiohttp_client(create_app(settings))
    for _ in range(500):
        if (await client.get("/readyz")).status == 200:
            seen_at_ready.append((len(retriever.queries), len(backend.calls)))
            break
        await asyncio.sleep(0.01)
    assert seen_at_ready == [(1, 1)]  # one warm-up search (as nobody: no ACL token) and one decode
    assert backend.calls[0].options.max_tokens == 1
