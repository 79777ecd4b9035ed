"""The openai embedder against a loopback /v1/embeddings; the llama_cpp embedder with the bundled GGUF."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from core.errors import RetrievalError
from core.retrieval.config import EmbedSettings
from core.retrieval.embedders import get_embedder


async def test_openai_embedder_batches_and_keeps_order(aiohttp_server: Any) -> None:
    requests: list[dict[str, Any]] = []
    auth: list[str | None] = []

    async def embeddings(request: web.Request) -> web.Response:
        body = await request.json()
        requests.append(body)
        auth.append(request.headers.get("Authorization"))
        if body["model"] == "broken":
            return web.json_response(
                {"error": {"message": "bad model", "type": "invalid_request_error"}}, status=400
            )
        data = [
            {"object": "embedding", "index": i, "embedding": [float(len(t)), 1.0]}
            for i, t in enumerate(body["input"])
        ]
        data.reverse()  # the client must order by index, not by position
        return web.json_response(
            {
                "object": "list",
                "data": data,
                "model": body["model"],
                "usage": {"prompt_tokens": 1, "total_tokens": 1},
            }
        )

    app = web.Application()
    app.router.add_post("/v1/embeddings", embeddings)
    server = await aiohttp_server(app, port=0)
    base = str(server.make_url("/v1"))
    embedder = get_embedder(EmbedSettings(backend="openai", base_url=base, api_key="sk-test", batch_size=2))
    vectors = await embedder.embed(["a", "bb", "ccc", "dddd", "x" * 5000])
    assert [v[0] for v in vectors] == [1.0, 2.0, 3.0, 4.0, 2000.0]  # over-long input truncated to max_chars
    assert [len(r["input"]) for r in requests] == [2, 2, 1]
    assert await embedder.dimension() == 2
    broken = get_embedder(EmbedSettings(backend="openai", base_url=base, api_key="sk-test", model="broken"))
    with pytest.raises(RetrievalError, match="embeddings endpoint") as raised:
        await broken.embed(["a"])
    # The key travels as a bearer header on every request, and nowhere else (bodies, errors).
    assert len(auth) == len(requests) >= 4 and set(auth) == {"Bearer sk-test"}
    assert "sk-test" not in json.dumps(requests) and "sk-test" not in str(raised.value)


@pytest.mark.llama
async def test_llama_cpp_embedder_with_a_gguf(bundled_model: Path) -> None:
    embedder = get_embedder(EmbedSettings(backend="llama_cpp", model_path=bundled_model, batch_size=2))
    vectors = await embedder.embed(["vacation days", "vacation days", "deploy rollback " * 400])
    assert len(vectors) == 3 and len(vectors[0]) == await embedder.dimension() > 100
    assert vectors[0] == pytest.approx(vectors[1])
    assert vectors[0] != pytest.approx(vectors[2])
