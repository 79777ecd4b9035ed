"""Unit tests: chunk locations, BM25 sparse vectors, registries, eval metrics."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from core.config import Settings
from core.errors import ConfigError
from core.retrieval import connectors as registry
from core.retrieval.chunking import chunk_document
from core.retrieval.config import EmbedSettings, SourceSpec
from core.retrieval.documents import Document
from core.retrieval.embedders import get_embedder
from core.retrieval.evaluation import score
from core.retrieval.sparse import document_vector, query_vector

HANDBOOK = """# Leave

Intro line.

## Vacation days

New employees get 20 days.

```bash
# not a heading, a shell comment
echo hi
```

## Requesting time off

### In the portal

Open the Time Off tab.
"""


def doc(text: str, kind: str = "markdown", **meta: str) -> Document:
    return Document(
        id="s:a.md",
        uri="/a.md",
        title="Leave",
        text=text,
        acl=("public",),
        updated_at=datetime(2026, 1, 1, tzinfo=UTC),
        source="s",
        kind=kind,
        meta=meta,
    )


def test_markdown_chunks_keep_heading_path_and_line_range() -> None:
    chunks = chunk_document(doc(HANDBOOK), size=60, overlap=0)
    assert [c.location for c in chunks] == [
        "Leave, lines 1-3",
        "Leave › Vacation days, lines 5-7",
        "Leave › Vacation days, lines 9-12",
        "Leave › Requesting time off › In the portal, lines 16-18",
    ]
    # The '# not a heading' line inside a code fence stays in its section.
    assert "# not a heading" in chunks[2].text
    assert chunks[3].embed_text("Leave").startswith("Leave › Leave › Requesting time off › In the portal\n")


def test_short_neighbouring_sections_are_merged_up_to_the_chunk_size() -> None:
    (chunk,) = chunk_document(doc(HANDBOOK), size=1000, overlap=0)
    assert chunk.location == "Leave › Vacation days / Requesting time off, lines 1-18"
    assert chunk.text.startswith("# Leave") and chunk.text.endswith("Open the Time Off tab.")


def test_long_section_is_split_with_accurate_lines() -> None:
    body = "\n".join(f"Line {i} of the policy text goes on for a while." for i in range(1, 41))
    chunks = chunk_document(doc("# Policy\n\n" + body), size=300, overlap=0)
    assert len(chunks) > 3
    lines = ("# Policy\n\n" + body).split("\n")
    for c in chunks:
        first = c.text.split("\n")[0]
        assert lines[c.start_line - 1] == first
        assert lines[c.end_line - 1] == c.text.split("\n")[-1]


def test_code_chunks_have_line_ranges_without_headings() -> None:
    code = "\n\n".join(f"def f{i}(x):\n    return x + {i}\n" for i in range(30))
    chunks = chunk_document(doc(code, kind="code", language="python"), size=200, overlap=0)
    assert chunks[0].location.startswith("lines 1-")
    assert all(c.text.startswith("def ") for c in chunks)


def test_pdf_chunks_name_their_page() -> None:
    text = "Page one text.\n\nPage two text."
    chunks = chunk_document(doc(text, kind="pdf", page_starts="1,3"), size=15, overlap=0)
    assert [c.page for c in chunks] == [1, 2]
    assert chunks[1].location == "page 2, line 3"


def test_bm25_stems_drops_stop_words_and_weighs_each_query_term_once() -> None:
    # Qdrant's English analyser: 'days'/'day' and 'employees'/'employee' meet, 'how'/'do'/'the' go.
    idx, values = query_vector("How many vacation days do the employees get?")
    assert idx == query_vector("many vacation day employee get")[0]
    assert values == [1.0] * len(idx) and idx == sorted(idx)
    assert query_vector("days day DAY")[0] == query_vector("day")[0]
    assert query_vector("the of and")[0] == []


def test_bm25_document_weights_saturate_with_term_frequency() -> None:
    idx, values = document_vector("deploy " * 50 + "rollback")
    weights = dict(zip(idx, values, strict=True))
    (deploy,), (rollback,) = query_vector("deploy")[0], query_vector("rollback")[0]
    assert weights[deploy] > weights[rollback]
    assert weights[deploy] < 2.2 + 1e-9  # bounded by k1 + 1
    assert idx == sorted(idx) and len(set(idx)) == len(idx)


def test_bm25_segments_chinese_so_single_words_match() -> None:
    doc = set(document_vector("新员工每年有二十天年假。请在 HR 门户中申请休假。")[0])
    for word in ("年假", "休假", "新员工"):
        assert set(query_vector(word)[0]) & doc, word
    # A word tokenizer alone would have made the whole sentence one token.
    assert not set(query_vector("天气")[0]) & doc
    # Latin words and numbers inside Chinese text still count (the English analysis is kept).
    assert set(query_vector("HR")[0]) <= doc


def test_source_language_is_validated() -> None:
    assert SourceSpec(name="d", type="files", language="German").language == "german"
    assert SourceSpec(name="d", type="files", sync_every="15m").sync_every == 900
    with pytest.raises(ValueError, match="Unknown language 'klingon'"):
        SourceSpec(name="d", type="files", language="klingon")
    with pytest.raises(ValueError, match="not a duration"):
        SourceSpec(name="d", type="files", sync_every="soon")


def test_unknown_connector_lists_the_available_ones() -> None:
    spec = SourceSpec(name="x", type="jira")
    with pytest.raises(ConfigError, match=r"^Unknown connector 'jira'; available: files, git, http$"):
        registry.build(spec, 1000)


def test_connector_option_typo_names_the_key(tmp_path) -> None:
    spec = SourceSpec(name="docs", type="files", path=str(tmp_path), inlcude=["*.md"])
    with pytest.raises(ConfigError, match=r"Source 'docs' \(type files\): inlcude: unknown key"):
        registry.build(spec, 1000)
    with pytest.raises(ConfigError, match="path: Field required"):
        registry.build(SourceSpec(name="docs", type="files"), 1000)
    with pytest.raises(ConfigError, match="not an http"):
        registry.build(SourceSpec(name="web", type="http", urls=["ftp://x"]), 1000)


def test_unknown_embedder_lists_the_available_ones() -> None:
    with pytest.raises(
        ConfigError, match="Unknown embedder 'bert'; available: llama_cpp, onnx, openai, sentence_transformers"
    ):
        get_embedder(EmbedSettings(), "bert")
    with pytest.raises(ConfigError, match="embed.model_path"):
        import asyncio

        asyncio.run(get_embedder(EmbedSettings(backend="llama_cpp")).embed(["x"]))


def test_retrieval_mode_is_validated(tmp_path) -> None:
    with pytest.raises(ValueError):
        Settings(home=str(tmp_path), retrieval={"mode": "fuzzy"})


def test_eval_metrics() -> None:
    ranking = [("a", "ua"), ("b", "ub"), ("c", "uc")]
    assert score(ranking, frozenset({"a"})) == {"recall@1": 1.0, "recall@5": 1.0, "mrr@10": 1.0, "ndcg@10": 1.0}
    m = score(ranking, frozenset({"ub", "z"}))  # matched by uri; the other (alternative) page never retrieved
    assert m["recall@1"] == 0.0 and m["recall@5"] == 1.0 and m["mrr@10"] == 0.5
    assert 0 < m["ndcg@10"] < 1
    assert score(ranking, frozenset({"z"}))["ndcg@10"] == 0.0


def test_scheduled_sync_times_follow_the_interval_with_jitter() -> None:
    from server.indexing import STALE_START_S, next_due

    start = 10_000.0
    # Never synced: one interval after the server started (never at once, never in lockstep).
    assert next_due(None, 900, start, 0.0) == start + 900
    assert next_due(None, 900, start, 1.0) == start + 900 + 90
    # Synced a minute ago: one interval after that, plus up to 10%.
    assert next_due(start - 60, 900, start, 0.5) == start - 60 + 900 + 45
    # Long overdue when the server starts: soon after the start, spread over STALE_START_S.
    assert next_due(start - 86_400, 900, start, 0.5) == start + STALE_START_S * 0.5
    assert next_due(start, 0, start, 0.5) is None  # sync_every: 0 turns it off
