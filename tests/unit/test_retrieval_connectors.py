"""Connectors against bad input: files (binary, invalid UTF-8, empty, oversized, broken PDF), globs, git."""

from __future__ import annotations

import os
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from connectors.globs import selected
from core.errors import ConnectorError
from core.retrieval import connectors as registry
from core.retrieval.config import SourceSpec
from core.retrieval.documents import Document, Skipped, Unchanged


def make_pdf(text: str) -> bytes:
    """A minimal one-page PDF showing ``text`` (offsets computed, so pypdf reads it cleanly)."""
    stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for i, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


async def scan(spec: SourceSpec, ctx: registry.ScanContext | None = None, max_bytes: int = 10_000) -> list:
    connector = registry.build(spec, max_bytes)
    return [item async for item in connector.scan(ctx or registry.ScanContext())]


async def test_files_skips_bad_input_with_reasons(tmp_path: Path) -> None:
    (tmp_path / "good.md").write_text("# Good doc\n\nHello.", encoding="utf-8")
    (tmp_path / "binary.txt").write_bytes(b"\x89PNG\r\n\x00\x00\x00IHDR")
    (tmp_path / "latin1.txt").write_bytes("caf\xe9 au lait".encode("latin-1"))
    (tmp_path / "empty.md").write_text("  \n\n", encoding="utf-8")
    (tmp_path / "huge.txt").write_text("x" * 20_000, encoding="utf-8")
    (tmp_path / "broken.pdf").write_bytes(b"%PDF-1.4\n1 0 obj << /Type /Catalog >>\ngarbage")
    (tmp_path / "page.html").write_text(
        "<html><head><title>Wiki page</title><script>var x=1;</script></head>"
        "<body><h1>Top</h1><p>Intro.</p><h2>Sub</h2><p>Body text.</p></body></html>",
        encoding="utf-8",
    )
    (tmp_path / "report.pdf").write_bytes(make_pdf("Quarterly report text"))
    items = await scan(
        SourceSpec(
            name="d",
            type="files",
            path=str(tmp_path),
            include=["**/*.md", "**/*.txt", "**/*.pdf", "**/*.html"],
        )
    )
    skipped = {Path(i.uri).name: i.reason for i in items if isinstance(i, Skipped)}
    assert skipped["binary.txt"] == "binary file"
    assert skipped["latin1.txt"].startswith("not valid UTF-8")
    assert skipped["empty.md"] == "empty"
    assert skipped["huge.txt"].startswith("larger than")
    assert skipped["broken.pdf"].startswith("broken PDF")
    docs = {i.id: i for i in items if isinstance(i, Document)}
    assert set(docs) == {"d:good.md", "d:page.html", "d:report.pdf"}
    assert docs["d:good.md"].title == "Good doc" and docs["d:good.md"].acl == ("public",)
    html = docs["d:page.html"]
    assert html.title == "Wiki page" and html.kind == "markdown"
    assert "## Sub" in html.text and "var x" not in html.text
    assert "Quarterly report text" in docs["d:report.pdf"].text


async def test_files_include_exclude_and_missing_folder(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "keep.md").write_text("# Keep\n\ntext", encoding="utf-8")
    (tmp_path / "a" / "drafts").mkdir()
    (tmp_path / "a" / "drafts" / "wip.md").write_text("# WIP\n\ntext", encoding="utf-8")
    (tmp_path / "top.py").write_text("def f():\n    return 1\n", encoding="utf-8")
    items = await scan(
        SourceSpec(
            name="d", type="files", path=str(tmp_path), include=["**/*.md", "*.py"], exclude=["**/drafts/**"]
        )
    )
    assert sorted(i.id for i in items) == ["d:a/keep.md", "d:top.py"]
    assert next(i for i in items if i.id == "d:top.py").kind == "code"
    with pytest.raises(ConnectorError, match="does not exist"):
        await scan(SourceSpec(name="d", type="files", path=str(tmp_path / "nope")))


def test_globs() -> None:
    assert selected("x.md", ["**/*.md"], []) and selected("a/b/x.md", ["**/*.md"], [])
    assert not selected("a/x.md", ["*.md"], [])
    assert not selected("a/.git/x.md", ["**/*.md"], ["**/.git/**"])


def git(repo: Path, *args: str, at: str | None = None) -> str:
    """Run git in ``repo``; ``at`` (ISO 8601) is the commit's author and committer time."""
    env = {**os.environ, "GIT_AUTHOR_DATE": at, "GIT_COMMITTER_DATE": at} if at else None
    done = subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True, env=env
    )
    return done.stdout


async def test_git_reads_the_branch_with_commit_times_and_is_incremental(tmp_path: Path) -> None:
    repo = tmp_path / "wiki"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.email", "t@example.com")
    git(repo, "config", "user.name", "T")
    (repo / "a.md").write_text("# A\n\nfirst", encoding="utf-8")
    (repo / "b.md").write_text("# B\n\nsecond", encoding="utf-8")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "one", at="2024-01-02T03:04:05Z")
    spec = SourceSpec(name="wiki", type="git", path=str(repo), branch="main", acl=["group:eng"])
    ctx = registry.ScanContext()
    items = await scan(spec, ctx)
    assert sorted(i.id for i in items) == ["wiki:a.md", "wiki:b.md"]
    assert all(i.acl == ("group:eng",) for i in items)
    # Each file's time is its last commit's, not the file's mtime (just now, when it was written).
    assert {i.updated_at for i in items} == {datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)}
    first_commit = ctx.cursor["commit"]
    # An uncommitted edit in the work tree is not on the branch: nothing changes.
    (repo / "a.md").write_text("# A\n\nchanged", encoding="utf-8")
    known = {i.id: i.content_hash for i in items}
    ctx2 = registry.ScanContext(known=known, cursor={"commit": first_commit})
    again = await scan(spec, ctx2)
    assert all(isinstance(i, Unchanged) for i in again)
    os.utime(repo / "a.md", (1_000_000_000, 1_000_000_000))  # an mtime in 2001, far from both commits
    git(repo, "commit", "-q", "-am", "two", at="2024-03-04T05:06:07Z")
    ctx3 = registry.ScanContext(known=known, cursor={"commit": first_commit})
    third = await scan(spec, ctx3)
    read = [i for i in third if isinstance(i, Document)]
    assert [i.id for i in read] == ["wiki:a.md"] and "changed" in read[0].text
    assert read[0].updated_at == datetime(2024, 3, 4, 5, 6, 7, tzinfo=UTC)
    assert ctx3.cursor["commit"] != first_commit
    with pytest.raises(ConnectorError, match="branch"):
        await scan(SourceSpec(name="wiki", type="git", path=str(repo), branch="nope"))
