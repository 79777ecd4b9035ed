"""One reranker per `hearth serve`: the assistant's search and /v1/index/search share one engine.

A real `hearth serve` process with ``retrieval.rerank.backend: llama_cpp`` runs a stand-in
llama-server (``llm.local.server_path``) that records each start; both retrievers of the server
rerank through it, it starts once, and it is gone after the server stops.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.fixtures.openai_server import FakeOpenAI
from tests.fixtures.rerank_server import write_stand_in
from tests.fixtures.retrieval import ACLS, write_corpus

pytestmark = pytest.mark.slow


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split(") ")[1].split()[0] != "Z"


def _parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().split(") ")[1].split()[1])


async def test_serve_starts_one_reranking_engine_for_all_its_retrievers(
    hearth_serve: Any, openai_server: FakeOpenAI, tmp_path: Path
) -> None:
    starts, calls = tmp_path / "starts.txt", tmp_path / "calls.txt"
    fake = write_stand_in(tmp_path / "llama-server", favourite="rollback", starts=starts, calls=calls)
    gguf = tmp_path / "bge-reranker-v2-m3-Q8_0.gguf"
    gguf.write_bytes(b"GGUF")
    folders = write_corpus(tmp_path / "docs")
    sources = [
        {"name": s, "type": "files", "path": str(p), "acl": ACLS[s], "sync_every": 0}
        for s, p in folders.items()
    ]
    server = await hearth_serve(
        {
            "llm": {
                "local": {"enabled": False, "server_path": str(fake)},
                "remote": {"base_url": openai_server.base_url, "api_key": "sk-test", "max_retries": 0},
            },
            "sources": sources,
            "retrieval": {
                "chunk_size": 400,
                "chunk_overlap": 40,
                "rerank": {"backend": "llama_cpp", "model_path": str(gguf), "budget_ms": 20000},
            },
        }
    )
    owner_path = tmp_path / "home" / "qdrant" / "hearth_docs.owner.json"
    deadline = time.monotonic() + 60
    while not owner_path.exists():
        assert time.monotonic() < deadline, "the server never announced itself as the index owner"
        await asyncio.sleep(0.2)
    admin = {"Authorization": f"Bearer {json.loads(owner_path.read_text())['token']}"}
    user = {"Authorization": f"Bearer {await server.token('erin', *ACLS['eng'])}"}
    query = {"query": "how do I roll back a deploy", "k": 3}
    async with aiohttp.ClientSession() as session:
        async with session.post(server.url + "/v1/index", json={}, headers=admin) as resp:
            assert resp.status == 200, await resp.text()
        # /v1/index/search (what `hearth search` uses) and /v1/search (the assistant's retriever).
        for path, headers in (("/v1/index/search", admin), ("/v1/search", user), ("/v1/index/search", admin)):
            async with session.post(server.url + path, json=query, headers=headers) as resp:
                assert resp.status == 200, await resp.text()
                hits = (await resp.json())["hits"]
                assert hits and hits[0]["doc_id"] == "eng:deploys.md"
    pids = [int(p) for p in starts.read_text().split()]
    assert len(pids) == 1, f"{len(pids)} reranking engines started: {pids}"
    assert _parent(pids[0]) == server.proc.pid and _alive(pids[0])
    # Every search reranked, all through that one engine.
    assert [int(p) for p in calls.read_text().split()] == pids * 3
    assert await server.stop() == 0
    deadline = time.monotonic() + 10
    while _alive(pids[0]):  # stopped once at shutdown (the child also has a death signal)
        assert time.monotonic() < deadline, "the reranking engine outlived hearth serve"
        await asyncio.sleep(0.1)
