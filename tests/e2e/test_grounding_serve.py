"""The real `hearth serve` with the bundled model over the demo handbook: the REST API's JSON marks
unsupported sentences and scores each one; the SSE stream ends with the verified text and lists
what was removed."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from tests.fixtures.serve import HEARTH
from tests.fixtures.serve import _env as serve_env

HANDBOOK = Path(__file__).resolve().parents[2] / "deploy" / "demo" / "handbook"
QUESTION = "What do I get paid for a week as primary on call?"

pytestmark = [pytest.mark.llama, pytest.mark.slow]


async def read_sse(resp: aiohttp.ClientResponse) -> list[tuple[str, dict[str, Any]]]:
    events, event = [], ""
    async for raw in resp.content:
        line = raw.decode().rstrip("\n")
        if line.startswith("event: "):
            event = line[7:]
        elif line.startswith("data: "):
            events.append((event, json.loads(line[6:])))
    return events


async def test_rest_json_marks_and_sse_drops(hearth_serve: Any, bundled_model: Path, tmp_path: Path) -> None:
    sections = {
        "llm": {"local": {"n_ctx": 2048, "n_threads": 2}, "max_tokens": 60},
        "sources": [{"name": "handbook", "type": "files", "path": str(HANDBOOK), "include": ["**/*.md"]}],
    }
    config = tmp_path / "index.yaml"
    config.write_text(yaml.safe_dump({"home": str(tmp_path / "home")} | sections), encoding="utf-8")
    # Indexed by the same `hearth` the server runs (one owner of the store at a time).
    index = await asyncio.create_subprocess_exec(
        *HEARTH, "--config", str(config), "index", env=serve_env(), stderr=asyncio.subprocess.PIPE
    )
    _, err = await index.communicate()
    assert index.returncode == 0, err.decode()
    server = await hearth_serve(sections)
    token = await server.token("carol", "public")
    auth = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(server.url) as http:
        # The server listens before the model and the embedder are loaded: /readyz says when.
        async with asyncio.timeout(180):
            while True:
                async with http.get("/readyz") as resp:
                    if resp.status == 200:
                        break
                await asyncio.sleep(0.25)
        async with http.post("/v1/ask", json={"question": QUESTION}, headers=auth) as resp:
            assert resp.status == 200, await resp.text()
            marked = await resp.json()
        async with http.post(
            "/v1/ask", json={"question": QUESTION}, headers=auth | {"Accept": "text/event-stream"}
        ) as resp:
            events = await read_sse(resp)
    assert await server.stop() == 0

    # JSON: every sentence is kept, each with its support score; unsupported ones say so in the text.
    grounding = marked["grounding"]
    assert grounding["mode"] == "mark" and grounding["removed"] == [] and not grounding["not_found"]
    assert "300 EUR" in marked["answer"]
    for sentence in grounding["sentences"]:
        assert 0 <= sentence["support"] <= 1
        assert sentence["supported"] == (sentence["citation"] is not None)
        if not sentence["supported"]:
            assert f"{sentence['text'].rstrip('.!?')} [not in the sources]" in marked["answer"]

    # SSE: the deltas stream as before; the final answer event is the verified text.
    kinds = [kind for kind, _ in events]
    assert kinds[-1] == "answer" and "delta" in kinds
    final = events[-1][1]
    assert final["grounding"]["mode"] == "drop" and "300 EUR" in final["answer"]
    for removed in final["grounding"]["removed"]:
        assert removed not in final["answer"]
    assert "[not in the sources]" not in final["answer"]
    assert final["citations"] and all(c["uri"].endswith(".md") for c in final["citations"])
