"""Thin-client mode: `hearth lsp --server URL --token T` against a loopback REST+SSE server."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from pygls.exceptions import JsonRpcException

from tests.e2e.lsp_rig import Editor, make_workspace, start_editor, write_config

TOKEN = "lsp-test-token"


@dataclass
class HearthServe:
    """A stand-in for `hearth serve`'s /v1 API: records requests, streams scripted answers."""

    mode: str = "ok"  # "ok" | "die" (drop the connection mid-stream) | "hang" (stall) | "json" (no SSE)
    requests: list[tuple[str, dict[str, Any], dict[str, str]]] = field(default_factory=list)
    url: str = ""

    def text_for(self, path: str, body: dict[str, Any]) -> str:
        if path.endswith("/generate"):
            return "```python\ndef total(prices):\n    return sum(p for p in prices if p >= 0)\n```"
        if path.endswith("/ask"):
            return f"Remote answer to: {body['question']}"
        if path.endswith("/tests"):
            expected = 3 if body.get("failures") else 4  # right only once the failures come back
            return f"```python\nfrom geometry import add\n\n\ndef test_add():\n    assert add(1, 2) == {expected}\n```"
        return "Remote explanation: it computes the area of a circle."

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append((request.path, body, dict(request.headers)))
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return web.json_response({"message": "bad token"}, status=401)
        text = self.text_for(request.path, body)
        answer = {
            "answer": text,
            "citations": [],
            "backend": "local",
            "model": "served-model",
            "usage": {"prompt_tokens": 5, "completion_tokens": 9},
            "timings_ms": {"total": 12.0},
        }
        if self.mode == "json" or request.headers.get("Accept") != "text/event-stream":
            return web.json_response(answer)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for i in range(0, len(text), 10):
            await resp.write(f"event: delta\ndata: {json.dumps({'text': text[i : i + 10]})}\n\n".encode())
            if self.mode == "hang":
                await asyncio.sleep(3600)
            if self.mode == "die":
                assert request.transport is not None
                request.transport.close()  # the GPU box goes away mid-answer
                return resp
        await resp.write(f"event: answer\ndata: {json.dumps(answer)}\n\n".encode())
        await resp.write_eof()
        return resp


@pytest.fixture
async def serve() -> AsyncIterator[tuple[HearthServe, web.AppRunner]]:
    state = HearthServe()
    app = web.Application()
    for path in ("/v1/ask", "/v1/code/explain", "/v1/code/generate", "/v1/code/tests"):
        app.router.add_post(path, state.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    state.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
    yield state, runner
    await runner.cleanup()


@pytest.fixture
async def editor(tmp_path: Path, serve: tuple[HearthServe, web.AppRunner]) -> AsyncIterator[Editor]:
    state, _ = serve
    config = write_config(
        tmp_path, {"local": {"enabled": False}}, lsp={"index_workspace": False, "idle_timeout_s": 2}
    )
    async for ed in start_editor(
        config, make_workspace(tmp_path), extra_args=["--server", state.url, "--token", TOKEN]
    ):
        yield ed


async def test_explain_and_generate_go_through_the_server(
    editor: Editor, serve: tuple[HearthServe, web.AppRunner]
) -> None:
    state, _ = serve
    uri = editor.open("geometry.py")
    result = await editor.execute("hearth.explain", [{"uri": uri, "line": 4}])
    assert "Remote explanation: it computes the area" in result["markdown"]
    assert result["model"] == "served-model"
    path, body, headers = state.requests[0]
    assert path == "/v1/code/explain" and headers["Authorization"] == f"Bearer {TOKEN}"
    assert body["language"] == "python" and body["path"] == "geometry.py" and "def area(r):" in body["code"]
    assert body["context"] == "import math"  # the file's imports travel as context

    made = await editor.execute("hearth.generate", [{"uri": uri, "line": 13}])
    assert made["applied"] is True and "def total(prices):" in made["code"]
    assert state.requests[1][1]["code"].startswith("# TODO: return the total")

    state.mode = "json"  # a server answering plain JSON works too
    answer = await editor.execute("hearth.ask", [{"question": "Where is area computed?"}])
    assert "Remote answer to: Where is area computed?" in answer["markdown"]


async def test_tests_are_written_run_here_and_repaired_over_the_server(
    editor: Editor, serve: tuple[HearthServe, web.AppRunner]
) -> None:
    """The loops run beside the workspace (the sandbox runs its files); only model calls travel."""
    state, _ = serve
    uri = editor.open("geometry.py")
    made = await editor.execute("hearth.generateTests", [{"uri": uri, "line": 9}])
    assert made["path"] == "tests/test_geometry.py" and "== 4" in made["code"]
    fixed = await editor.execute("hearth.runTests", [{"uri": uri, "line": 9, "fix": "tests"}])
    assert fixed["ok"] is True and fixed["repaired"] is True, fixed
    assert "== 3" in (editor.root / "tests" / "test_geometry.py").read_text()  # noqa: ASYNC240
    repair = [body for path, body, _ in state.requests if path == "/v1/code/tests"][-1]
    assert "assert 3 == 4" in repair["failures"] and "== 4" in repair["previous"]
    assert repair["path"] == "geometry.py" and "def add(a, b):" in repair["code"]


async def test_server_going_away_mid_answer_is_a_clean_error(
    editor: Editor, serve: tuple[HearthServe, web.AppRunner]
) -> None:
    state, runner = serve
    uri = editor.open("geometry.py")
    state.mode = "hang"
    with pytest.raises(JsonRpcException, match="sent nothing for 2s"):
        await asyncio.wait_for(editor.execute("hearth.explain", [{"uri": uri, "line": 4}]), 30)
    state.mode = "die"
    with pytest.raises(JsonRpcException, match="Lost the connection to the Hearth server"):
        await asyncio.wait_for(editor.execute("hearth.explain", [{"uri": uri, "line": 4}]), 30)
    await runner.cleanup()  # now nothing listens at all
    with pytest.raises(JsonRpcException, match="Lost the connection to the Hearth server"):
        await asyncio.wait_for(editor.execute("hearth.explain", [{"uri": uri, "line": 4}]), 30)
    # The server process is still healthy: code actions still answer.
    assert len(await editor.actions(uri, 4)) == 4


async def test_thin_client_against_a_real_hearth_serve(tmp_path: Path, hearth_serve: Any) -> None:
    """`hearth lsp --server` → a real `hearth serve` → the real openai backend → a scripted API."""
    from tests.e2e.lsp_rig import ScriptedAPI, remote_llm, start_api

    api = ScriptedAPI(
        reply=lambda prompt: "```python\ndef total(prices):\n    return sum(p for p in prices if p >= 0)\n```"
    )
    runner = await start_api(api)
    try:
        serve = await hearth_serve({"llm": remote_llm(api)})
        token = await serve.token("dev")
        config = write_config(tmp_path, {"local": {"enabled": False}})
        async for editor in start_editor(
            config, make_workspace(tmp_path), extra_args=["--server", serve.url, "--token", token]
        ):
            uri = editor.open("geometry.py")
            made = await editor.execute("hearth.generate", [{"uri": uri, "line": 13}])
            assert made["applied"] is True and made["model"] == "fake-coder"
            assert "def total(prices):" in (editor.root / "geometry.py").read_text()  # noqa: ASYNC240
            assert "# TODO: return the total" in api.requests[0]["messages"][-1]["content"]
        await serve.stop()
    finally:
        await runner.cleanup()
