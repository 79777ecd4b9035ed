"""User-facing text shows no server path, and user-facing scores are ranks (issue 15).

Through the real indexer (files connector → embedded store) and retriever: what a search hit, an
answer's citations and the model's prompt call a document is its path inside the source (or its
``base_url`` link), never where the files live on the server; the scores in JSON are 1/rank, not
the BM25 values whose IDF counts documents the asker cannot read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from core.assistant import Assistant
from core.config import Settings
from core.contracts import Citation, Hit, Request, public_uri, rank_score
from core.llm.fake import FakeBackend
from core.llm.router import Router
from tests.fixtures.retrieval import HashEmbedder, corpus_settings


async def _index(settings: Settings) -> Any:
    from core.retrieval.search import DocsRetriever
    from core.retrieval.sync import Indexer

    indexer = Indexer(settings, embedder=HashEmbedder())
    try:
        await indexer.sync()
    finally:
        await indexer.aclose()
    return DocsRetriever(settings, embedder=HashEmbedder())


async def test_hits_citations_and_prompts_carry_no_server_path(tmp_path: Path) -> None:
    settings = corpus_settings(tmp_path)
    retriever = await _index(settings)
    backend = FakeBackend(reply="Twenty-five days [1].")
    assistant = Assistant(settings, Router(local=backend, remote=None), retriever=retriever)
    try:
        hits = await retriever.search("vacation days", acl=None, k=5)
        assert hits
        answer = await assistant.ask(Request(text="How many vacation days do I get?", acl=None))
    finally:
        await assistant.aclose()
    root = str(tmp_path)
    for hit in hits:
        assert root not in hit.uri and not hit.uri.startswith("/"), hit.uri
        assert hit.doc_id.endswith(":" + hit.uri)  # the path inside its source
        assert root not in str(hit.as_dict(1))
    assert answer.citations and all(root not in c.uri and not c.uri.startswith("/") for c in answer.citations)
    assert root not in str(answer.as_dict())
    prompt = " ".join(m.content for call in backend.calls for m in call.messages)
    assert root not in prompt


async def test_a_base_url_source_is_cited_by_its_link(tmp_path: Path) -> None:
    data = corpus_settings(tmp_path).model_dump(mode="json")
    for source in data["sources"]:
        source["base_url"] = f"https://wiki.example.com/{source['name']}/"
    linked = Settings(**data)
    retriever = await _index(linked)
    try:
        hits = await retriever.search("vacation days", acl=None, k=3)
    finally:
        await retriever.aclose()
    assert hits and all(h.uri.startswith("https://wiki.example.com/") for h in hits)


@pytest.mark.parametrize(
    ("uri", "doc_id", "shown"),
    [
        ("/srv/hearth/docs/handbook/leave/policy.md", "handbook:leave/policy.md", "leave/policy.md"),
        ("file:///srv/docs/a.md", "h:a.md", "a.md"),
        ("/srv/somewhere/else.md", "git:not-this", "else.md"),
        ("C:\\docs\\team\\a.md", "s:team/a.md", "team/a.md"),
        ("https://wiki.example.com/a.md", "wiki:a.md", "https://wiki.example.com/a.md"),
        ("leave/policy.md", "handbook:leave/policy.md", "leave/policy.md"),
    ],
)
def test_documents_indexed_with_server_paths_are_shown_relative(uri: str, doc_id: str, shown: str) -> None:
    """An index written before connectors cited relative paths still shows none."""
    assert public_uri(uri, doc_id) == shown
    assert Hit("c", doc_id, uri, "t", "x", 0.7).uri == shown
    assert Citation(1, "t", uri, doc_id, "c", "", 0.7).uri == shown


def test_user_facing_scores_are_ranks_not_bm25_values() -> None:
    # Two searches whose raw scores differ only because of documents the asker cannot read
    # (a term's IDF counts restricted documents too) look the same from outside.
    seen_by_user = [
        [
            Hit("c1", "d:1", "1.md", "t", "x", raw).as_dict(1),
            Hit("c2", "d:2", "2.md", "t", "x", raw / 2).as_dict(2),
        ]
        for raw in (7.31, 2.02)
    ]
    assert seen_by_user[0] == seen_by_user[1]
    assert [h["score"] for h in seen_by_user[0]] == [1.0, 0.5]
    assert Hit("c", "d:1", "1.md", "t", "x", 7.31).as_dict(1, raw_score=True)["score"] == 7.31
    assert Citation(3, "t", "u", "d:1", "c", "", 9.9).as_dict()["score"] == rank_score(3) == 0.333333


async def test_the_files_connector_cites_paths_inside_the_source(tmp_path: Path) -> None:
    from connectors.files import FilesConnector, FilesOptions
    from core.retrieval.connectors import ScanContext, SourceInfo
    from core.retrieval.documents import Document

    (tmp_path / "docs" / "leave").mkdir(parents=True)
    (tmp_path / "docs" / "leave" / "policy.md").write_text("# Leave\n\nTwenty-five days.", encoding="utf-8")
    info = SourceInfo("handbook", ("public",), 1 << 20)
    plain = FilesConnector(info, FilesOptions(path=tmp_path / "docs"))
    linked = FilesConnector(
        info, FilesOptions(path=tmp_path / "docs", base_url="https://wiki.example.com/hb/")
    )
    for connector, uri in (
        (plain, "leave/policy.md"),
        (linked, "https://wiki.example.com/hb/leave/policy.md"),
    ):
        docs = [d async for d in connector.scan(ScanContext())]
        assert [d.uri for d in docs if isinstance(d, Document)] == [uri]
