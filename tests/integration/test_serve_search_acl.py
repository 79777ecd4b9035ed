"""REST search and ask over a real Qdrant (local mode) index: each token sees only what its ACL allows,
and the audit log names the sources an answer used."""

from __future__ import annotations

import json
from typing import Any

from core.assistant import Assistant
from core.audit import recent
from core.config import Settings
from core.llm.fake import FakeBackend
from core.llm.router import Router
from core.retrieval.search import DocsRetriever
from core.retrieval.sync import Indexer
from server.app import AUDIT, DATABASE, create_app
from server.auth import TOKENS
from tests.fixtures.retrieval import HashEmbedder


async def test_search_and_ask_respect_the_token_acl(aiohttp_client: Any, corpus: Settings) -> None:
    indexer = Indexer(corpus, embedder=HashEmbedder())
    try:
        await indexer.sync()
    finally:
        await indexer.aclose()
    retriever = DocsRetriever(corpus, embedder=HashEmbedder())
    backend = FakeBackend(reply="See [1].")
    assistant = Assistant(
        corpus, Router(local=backend, remote=None, routing=corpus.llm.routing), retriever=retriever
    )
    client = await aiohttp_client(create_app(corpus, assistant=assistant))
    _, eng = await client.app[TOKENS].create("erin", ["group:eng"])
    _, guest = await client.app[TOKENS].create("gus", [])

    async def sources(token: str, query: str) -> set[str]:
        resp = await client.post(
            "/v1/search", json={"query": query, "k": 10}, headers={"Authorization": f"Bearer {token}"}
        )
        assert resp.status == 200
        return {h["doc_id"].split(":")[0] for h in (await resp.json())["hits"]}

    # Each query matches words in every source: what comes back is exactly what the ACL allows.
    assert await sources(eng, "deploy rollback on-call stipend vacation salary") == {"public", "eng"}
    assert "eng" in await sources(eng, "deploy rollback")
    assert await sources(guest, "deploy rollback on-call stipend salary bands vacation") == {"public"}

    resp = await client.post(
        "/v1/ask",
        json={"question": "How do I roll back a deploy?"},
        headers={"Authorization": f"Bearer {eng}"},
    )
    answer = await resp.json()
    assert resp.status == 200 and answer["citations"]
    await client.app[AUDIT].flush()
    rows = await recent(client.app[DATABASE])
    assert rows[0]["action"] == "ask" and rows[0]["user_name"] == "erin"
    assert answer["citations"][0]["uri"] in rows[0]["sources"]
    searches = [r for r in rows if r["action"] == "search"]
    assert len(searches) == 3 and all(r["status"] == "ok" for r in searches)
    guests = [r["sources"] for r in searches if r["user_name"] == "gus"]
    # Documents are named by their path inside the source (no server path in anything a user sees).
    assert len(guests) == 1 and set(json.loads(guests[0])) <= {"leave.md", "expenses.md"}
    assert any("deploys.md" in r["sources"] for r in searches if r["user_name"] == "erin")
