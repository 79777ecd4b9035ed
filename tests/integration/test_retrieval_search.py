"""Index → search → ACL filtering through the real embedder and the embedded store (Qdrant Edge), plus the CLI."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st

from core.config import Settings
from core.retrieval.search import DocsRetriever
from core.retrieval.sync import Indexer
from server.cli import main
from tests.fixtures.retrieval import ACLS, HashEmbedder, corpus_settings
from tests.fixtures.skips import unavailable

TOKENS = ["public", "group:eng", "group:hr", "user:alice", "user:bob", "group:sales"]
QUERIES = [
    "vacation days",
    "how do I roll back a deploy",
    "salary bands",
    "on-call stipend per week",
    "hotel reimbursement",
    "confidential payout",
    "PagerDuty",
]


@pytest.fixture
async def indexed(corpus: Settings) -> AsyncIterator[DocsRetriever]:
    indexer = Indexer(corpus)
    reports = await indexer.sync()
    await indexer.aclose()
    assert {r.source: r.added for r in reports} == {"public": 2, "eng": 2, "hr": 1}
    retriever = DocsRetriever(corpus)
    yield retriever
    await retriever.aclose()


async def test_search_finds_the_right_doc_and_respects_acl(indexed: DocsRetriever) -> None:
    hits = await indexed.search(
        "How many vacation days do new employees get?", acl=frozenset({"public"}), k=3
    )
    assert hits[0].doc_id == "public:leave.md"
    assert hits[0].location.startswith("Leave policy › Vacation days")
    assert all(h.source == "public" for h in hits)
    # The operator sees everything; an HR member sees HR's doc; a public reader never does.
    assert (await indexed.search("salary bands", acl=None, k=1))[0].doc_id == "hr:salaries.md"
    assert (await indexed.search("salary bands", acl=frozenset({"user:alice"}), k=1))[
        0
    ].doc_id == "hr:salaries.md"
    # HR's doc mentions vacation payout; a public reader gets only public chunks.
    public = await indexed.search("vacation payout rules for leavers", acl=frozenset({"public"}), k=10)
    assert public and all(h.source == "public" for h in public)
    # Nothing relevant to a public reader: below the similarity floor, so nothing at all.
    assert (
        await indexed.search("salary bands for engineers", acl=frozenset({"public"}), k=5, mode="dense") == []
    )
    assert await indexed.search("salary bands", acl=frozenset(), k=5) == []
    eng = await indexed.search("vacation days", acl=frozenset({"group:eng"}), k=10)
    assert all(h.source == "eng" for h in eng)
    # A query far beyond the embedder's window is truncated, not an error.
    long = await indexed.search("vacation days " + "lorem ipsum " * 5000, acl=None, k=2)
    assert long and long[0].doc_id == "public:leave.md"
    # Each mode works on its own; BM25 finds exact tokens.
    assert (await indexed.search("PagerDuty", acl=None, k=1, mode="bm25"))[0].doc_id == "eng:oncall.md"
    assert (await indexed.search("rolling back a release", acl=None, k=1, mode="dense"))[
        0
    ].doc_id == "eng:deploys.md"


def _qdrant_server(tmp_path: Path) -> Iterator[str]:
    """A Qdrant server for the server backend: $HEARTH_TEST_QDRANT_URL, or a `qdrant` binary started here."""
    url = os.environ.get("HEARTH_TEST_QDRANT_URL")
    if url:
        yield url
        return
    binary = shutil.which("qdrant")
    if binary is None:
        unavailable(
            "server backend not exercised against a server: no `qdrant` binary on PATH and "
            "HEARTH_TEST_QDRANT_URL unset (its code path runs against qdrant-client local mode: the 'local' case)",
            ci_may_skip=True,
        )
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {
        **os.environ,
        "QDRANT__SERVICE__HOST": "127.0.0.1",
        "QDRANT__SERVICE__HTTP_PORT": str(port),
        "QDRANT__SERVICE__GRPC_PORT": "0",
        "QDRANT__STORAGE__STORAGE_PATH": str(tmp_path / "qdrant-server"),
        "QDRANT__TELEMETRY_DISABLED": "true",
    }
    proc = subprocess.Popen(
        [binary], env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):  # readiness is polled, not slept for
            if proc.poll() is not None:
                pytest.fail(f"qdrant exited: {proc.stderr.read().decode()[-2000:] if proc.stderr else ''}")
            try:
                with urllib.request.urlopen(f"{url}/readyz", timeout=1) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture(params=["edge", "local", "server"])
def backend_corpus(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Settings]:
    """The corpus settings on each store backend (edge, qdrant-client local mode, a Qdrant server)."""
    if request.param == "server":
        for url in _qdrant_server(tmp_path):
            yield corpus_settings(tmp_path, store={"url": url, "collection": f"t{os.getpid()}"})
        return
    yield corpus_settings(tmp_path, store={"backend": request.param})


def test_no_result_ever_lacks_the_askers_tokens(backend_corpus: Settings) -> None:
    loop = asyncio.new_event_loop()

    async def build() -> DocsRetriever:
        indexer = Indexer(backend_corpus, embedder=HashEmbedder())
        try:
            await indexer.sync()
        finally:
            await indexer.aclose()
        return DocsRetriever(backend_corpus, embedder=HashEmbedder())

    retriever = loop.run_until_complete(build())
    assert loop.run_until_complete(retriever.store.count()) >= 5

    @hyp_settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
    @given(
        acl=st.frozensets(st.sampled_from(TOKENS), max_size=3),
        query=st.sampled_from(QUERIES),
        mode=st.sampled_from(["dense", "bm25", "hybrid"]),
        k=st.integers(1, 10),
    )
    def check(acl: frozenset[str], query: str, mode: str, k: int) -> None:
        hits = loop.run_until_complete(retriever.search(query, acl=acl, k=k, mode=mode))  # type: ignore[arg-type]
        assert len(hits) <= k
        for hit in hits:
            assert set(ACLS[hit.source]) & acl, (hit.doc_id, acl)

    try:
        check()
        # Something is found for readers who may read something, so the property is not vacuous.
        assert loop.run_until_complete(retriever.search("vacation days", acl=frozenset({"public"}), k=3))
    finally:
        loop.run_until_complete(retriever.aclose())
        loop.close()


def test_cli_index_search_sources_eval(tmp_path: Path) -> None:
    settings = corpus_settings(tmp_path)
    config = tmp_path / "hearth.yaml"
    config.write_text(
        yaml.safe_dump(settings.model_dump(mode="json", include={"sources", "retrieval", "home"}))
    )
    run = CliRunner().invoke
    first = run(main, ["--config", str(config), "index"])
    assert first.exit_code == 0, first.output
    assert "public: 2 added, 0 updated, 0 deleted, 0 unchanged, 0 skipped" in first.output
    (Path(settings.sources[0].options()["path"]) / "notes.md").write_bytes(b"\xff\xfe bad")
    second = run(main, ["--config", str(config), "index", "--json"])
    data = {r["source"]: r for r in json.loads(second.output)}
    assert data["public"]["unchanged"] == 2 and data["public"]["added"] == 0
    assert data["public"]["skipped"][0]["reason"].startswith("not valid UTF-8")
    out = run(
        main, ["--config", str(config), "search", "vacation days", "--json", "--k", "2", "--acl", "public"]
    )
    hits = json.loads(out.output)
    assert [h["rank"] for h in hits] == [1, 2]
    assert hits[0]["doc_id"] == "public:leave.md"
    assert set(hits[0]) >= {"rank", "score", "doc_id", "uri", "title", "text", "chunk_id"}
    listing = json.loads(run(main, ["--config", str(config), "sources", "list", "--json"]).output)
    assert {r["name"]: r["docs"] for r in listing} == {"public": 2, "eng": 2, "hr": 1}
    assert all(r["last_sync"] for r in listing)
    evalset = tmp_path / "eval.jsonl"
    evalset.write_text(
        '{"query": "vacation days for new staff", "relevant": ["public:leave.md"]}\n'
        '{"query": "roll back the api", "relevant": ["eng:deploys.md"]}\n'
    )
    metrics = json.loads(
        run(main, ["--config", str(config), "eval", "retrieval", str(evalset), "--json"]).output
    )
    assert set(metrics) == {"dense", "bm25", "rrf", "hybrid"}
    assert set(metrics["hybrid"]) == {"recall@1", "recall@5", "mrr@10", "ndcg@10"}
    assert metrics["hybrid"]["recall@5"] == 1.0
    bad = run(main, ["--config", str(config), "search", "x", "--mode", "fuzzy"])
    assert bad.exit_code == 2
    unknown = run(main, ["--config", str(config), "index", "--source", "jira"])
    assert unknown.exit_code == 2 and "Unknown source 'jira'; available: eng, hr, public" in unknown.output


def test_cli_search_as_a_user_uses_their_api_token_grants(tmp_path: Path) -> None:
    settings = corpus_settings(tmp_path)
    config = tmp_path / "hearth.yaml"
    config.write_text(
        yaml.safe_dump(settings.model_dump(mode="json", include={"sources", "retrieval", "home"}))
    )
    run = CliRunner().invoke
    assert run(main, ["--config", str(config), "index"]).exit_code == 0
    made = run(main, ["--config", str(config), "tokens", "create", "--user", "alice", "--acl", "group:eng"])
    assert made.exit_code == 0, made.output

    def docs_for(user: str, query: str = "roll back the api deploy") -> set[str]:
        out = run(main, ["--config", str(config), "search", query, "--json", "--k", "10", "--user", user])
        assert out.exit_code == 0, out.output
        return {h["doc_id"] for h in json.loads(out.output)}

    assert any(d.startswith("eng:") for d in docs_for("alice"))
    assert not any(d.startswith(("eng:", "hr:")) for d in docs_for("bob"))
    assert "public:leave.md" in docs_for("bob", "vacation days")
