"""`hearth serve` as a real subprocess: tokens, JSON and SSE answers through the real OpenAI-compatible
backend (a fake API on loopback), /metrics, JSON logs, audit rows, and SIGTERM during a stream."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.fixtures.openai_server import FakeOpenAI

SHUTDOWN_S = 1.5


def sections(openai_server: FakeOpenAI) -> dict[str, Any]:
    return {
        "llm": {
            "local": {"enabled": False},
            "remote": {
                "base_url": openai_server.base_url,
                "api_key": "sk-test-secret",
                "max_retries": 0,
                "timeout_s": 30,
            },
        },
        "server": {"shutdown_timeout_s": SHUTDOWN_S},
    }


def audit_rows(home: Path) -> list[dict[str, Any]]:
    with sqlite3.connect(home / "hearth.db") as conn:
        conn.row_factory = sqlite3.Row
        return [dict(r) for r in conn.execute("SELECT * FROM audit_log ORDER BY id")]


async def read_sse(resp: aiohttp.ClientResponse) -> list[tuple[str, dict[str, Any]]]:
    events = []
    event = ""
    async for raw in resp.content:
        line = raw.decode().rstrip("\n")
        if line.startswith("event: "):
            event = line[7:]
        elif line.startswith("data: "):
            events.append((event, json.loads(line[6:])))
    return events


async def test_rest_api_end_to_end(hearth_serve: Any, openai_server: FakeOpenAI, tmp_path: Path) -> None:
    server = await hearth_serve(sections(openai_server))
    token = await server.token("alice", "group:eng")
    auth = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(server.url) as http:
        async with http.post("/v1/ask", json={"question": "What is Hearth?"}) as resp:
            assert resp.status == 401
        async with http.post("/v1/ask", json={"question": "What is Hearth?"}, headers=auth) as resp:
            assert resp.status == 200
            answer = await resp.json()
        assert answer["answer"] == openai_server.reply
        assert (answer["backend"], answer["model"]) == ("remote", "fake-remote-model")
        assert openai_server.auth_headers[-1] == "Bearer sk-test-secret"

        async with http.post(
            "/v1/ask", json={"question": "Stream it"}, headers=auth | {"Accept": "text/event-stream"}
        ) as resp:
            assert resp.headers["Content-Type"].startswith("text/event-stream")
            events = await read_sse(resp)
        assert "".join(d["text"] for e, d in events if e == "delta") == openai_server.reply
        assert events[-1][0] == "answer" and events[-1][1]["backend"] == "remote"

        async with http.get("/readyz") as resp:
            ready = await resp.json()
            assert resp.status == 200, ready
        async with http.get("/metrics") as resp:
            metrics = await resp.text()
    assert 'hearth_http_requests_total{route="/v1/ask",status="200",surface="rest"} 2.0' in metrics
    assert 'hearth_http_requests_total{route="/v1/ask",status="401",surface="rest"} 1.0' in metrics
    assert 'hearth_completion_tokens_total{backend="remote"}' in metrics

    assert await server.stop() == 0
    rows = audit_rows(tmp_path / "home")
    assert [(r["user_name"], r["question"], r["backend"], r["status"]) for r in rows] == [
        ("alice", "What is Hearth?", "remote", "ok"),
        ("alice", "Stream it", "remote", "ok"),
    ]
    assert rows[0]["request_id"] == answer["request_id"]
    logs = server.logs()
    access = [entry for entry in logs if entry.get("route") == "/v1/ask"]
    assert len(access) == 3 and all(entry["request_id"] for entry in access)
    assert {entry.get("user") for entry in access} == {None, "alice"}
    everything = "\n".join(server.log_lines) + json.dumps(rows)
    assert token not in everything and "sk-test-secret" not in everything


async def test_sigterm_during_a_streaming_answer(
    hearth_serve: Any, openai_server: FakeOpenAI, tmp_path: Path
) -> None:
    openai_server.plan = ["stall"]  # one token, then the remote model hangs
    server = await hearth_serve(sections(openai_server))
    token = await server.token("bob")
    headers = {"Authorization": f"Bearer {token}", "Accept": "text/event-stream"}
    async with aiohttp.ClientSession(server.url) as http:
        async with http.post("/v1/ask", json={"question": "slow one"}, headers=headers) as resp:
            assert (await resp.content.readline()).startswith(b"event: delta")
            sent = time.monotonic()
            server.proc.send_signal(signal.SIGTERM)
            rest = await asyncio.wait_for(resp.content.read(), SHUTDOWN_S + 10)
    code = await server.stop(None)
    elapsed = time.monotonic() - sent
    assert code == 0
    assert elapsed < SHUTDOWN_S + 8, f"shutdown took {elapsed:.1f}s"
    assert b"event: error" in rest and b"restarting" in rest
    rows = audit_rows(tmp_path / "home")
    assert [(r["user_name"], r["status"]) for r in rows] == [("bob", "cancelled")]


@pytest.mark.llama
async def test_serve_answers_with_the_bundled_model(hearth_serve: Any, bundled_model: Path) -> None:
    server = await hearth_serve({"llm": {"local": {"n_ctx": 1024, "n_threads": 2}, "max_tokens": 12}})
    token = await server.token("carol")
    async with aiohttp.ClientSession(server.url) as http:
        async with http.post(
            "/v1/code/explain",
            json={"code": "def add(a, b):\n    return a + b", "language": "python"},
            headers={"Authorization": f"Bearer {token}", "Accept": "text/event-stream"},
        ) as resp:
            events = await read_sse(resp)
        async with http.get("/readyz") as resp:
            assert "loaded" in (await resp.json())["checks"]["model"]["detail"]
    assert events[-1][0] == "answer", events
    assert events[-1][1]["backend"] == "local" and events[-1][1]["usage"]["completion_tokens"] > 0
    assert await server.stop() == 0


def engine_children(pid: int) -> list[int]:
    """The llama-server processes `hearth serve` (``pid``) has started."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            try:
                exe = Path(f"/proc/{child}/exe").resolve().name
            except OSError:
                continue
            if exe == "llama-server":
                found.append(int(child))
    return found


def alive(pid: int) -> bool:
    """The process exists (a zombie too: only a reaped process leaves /proc)."""
    return os.path.exists(f"/proc/{pid}")


@pytest.mark.llama
async def test_an_engine_crash_does_not_take_serve_down(
    hearth_serve: Any, bundled_model: Path, openai_server: FakeOpenAI
) -> None:
    server = await hearth_serve(
        {
            "llm": {
                "local": {"n_ctx": 512, "n_threads": 2, "parallel": 2},
                "remote": {"base_url": openai_server.base_url, "api_key": "sk-test", "max_retries": 0},
                "max_tokens": 8,
            }
        }
    )
    token = await server.token("dave")
    headers = {"Authorization": f"Bearer {token}"}

    async def ask() -> dict[str, Any]:
        async with aiohttp.ClientSession(server.url) as http:
            async with http.post("/v1/ask", json={"question": "How do I request leave?"}, headers=headers) as resp:
                assert resp.status == 200, await resp.text()
                return dict(await resp.json())

    assert (await ask())["backend"] == "local"
    (engine,) = engine_children(server.proc.pid)
    os.kill(engine, signal.SIGSEGV)
    deadline = time.monotonic() + 30
    while engine_children(server.proc.pid) in ([], [engine]):
        assert time.monotonic() < deadline, "the engine was not restarted"
        await asyncio.sleep(0.1)
    (restarted,) = engine_children(server.proc.pid)
    assert restarted != engine and server.proc.returncode is None, "hearth serve must outlive its engine"
    answer = await ask()
    assert answer["backend"] == "local" and answer["answer"]
    assert not alive(engine), "the crashed engine was reaped"
    assert await server.stop() == 0
    assert not alive(restarted), "SIGTERM to hearth serve stops its engine too"
    logged = " ".join(line for line in server.log_lines)
    assert "SIGSEGV" in logged


@pytest.mark.llama
async def test_readyz_says_why_the_engine_is_down_and_answers_still_come(
    hearth_serve: Any, tmp_path: Path, openai_server: FakeOpenAI
) -> None:
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + b"\x00garbage" * 100)
    server = await hearth_serve(
        {
            "llm": {
                "local": {"model_path": str(broken), "restart_backoff_max_s": 60},
                "remote": {"base_url": openai_server.base_url, "api_key": "sk-test", "max_retries": 0},
            }
        }
    )
    token = await server.token("erin")
    async with aiohttp.ClientSession(server.url) as http:
        async with http.get("/readyz") as resp:
            model = (await resp.json())["checks"]["model"]
        async with http.post(
            "/v1/ask", json={"question": "Anything?"}, headers={"Authorization": f"Bearer {token}"}
        ) as resp:
            answer = await resp.json()
    assert "llm.local.model_path" in model["detail"] and "exited with status" in model["detail"], model
    assert model["ok"], "with a remote API configured the server stays ready"
    assert answer["backend"] == "remote" and answer["answer"] == openai_server.reply
    assert await server.stop() == 0
