"""Split documents into chunks that keep their heading path and line range for citations.

Markdown is cut at headings first (code fences are respected), long sections are split further
with langchain-text-splitters; source code is split on language boundaries.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from langchain_text_splitters import Language, RecursiveCharacterTextSplitter

from core.retrieval.documents import Document

_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")
_LANGS = {
    "python": Language.PYTHON,
    "js": Language.JS,
    "ts": Language.TS,
    "go": Language.GO,
    "java": Language.JAVA,
    "kotlin": Language.KOTLIN,
    "rust": Language.RUST,
    "ruby": Language.RUBY,
    "php": Language.PHP,
    "c": Language.C,
    "cpp": Language.CPP,
    "csharp": Language.CSHARP,
    "scala": Language.SCALA,
    "swift": Language.SWIFT,
    "lua": Language.LUA,
}
SEP = " › "


@dataclass(frozen=True)
class Chunk:
    """A piece of a document with where it came from."""

    index: int
    text: str
    headings: tuple[str, ...]
    start_line: int
    end_line: int
    page: int | None = None

    @property
    def location(self) -> str:
        """Citation location, e.g. 'Leave › Requesting time off, lines 12-30'."""
        where = f"page {self.page}, " if self.page else ""
        lines = (
            f"line {self.start_line}"
            if self.start_line == self.end_line
            else f"lines {self.start_line}-{self.end_line}"
        )
        return f"{SEP.join(self.headings)}, {where}{lines}" if self.headings else f"{where}{lines}"

    def embed_text(self, title: str) -> str:
        """What the embedder and BM25 see: the title and heading path give short sections their context."""
        context = SEP.join(h for h in (title, *self.headings) if h)
        return f"{context}\n{self.text}" if context else self.text


def page_fields(doc: Document, limit: int = 300) -> str:
    """A page's own fields, indexed as their own signals: its title, summary and outline.

    The summary is the page's first paragraph of prose (not a heading, code or a one-word line),
    cut at ``limit`` characters: a manual page's NAME line, a section's opening sentences. The
    outline is its distinct headings below the first, joined up to ``limit`` characters.
    """
    summary = ""
    fenced = False
    headings: list[str] = []
    for path, _, _ in _sections(doc.text) if doc.kind == "markdown" else []:
        if len(path) > 1 and path[-1] not in headings and path[-1] != doc.title:
            headings.append(path[-1])
    outline = "; ".join(headings)[:limit]
    for block in re.split(r"\n\s*\n", doc.text[:20000]):
        text = block.strip()
        if _FENCE.match(text):
            fenced = not fenced if text.count("```") + text.count("~~~") == 1 else fenced
            continue
        if fenced or not text or _HEADING.match(text) or len(text.split()) < 4:
            continue
        summary = " ".join(text.split())[:limit]
        break
    return "\n".join(part for part in (doc.title, summary, outline) if part)


@lru_cache(maxsize=32)
def _splitter(kind: str, size: int, overlap: int) -> RecursiveCharacterTextSplitter:
    overlap = min(overlap, size // 2)
    if kind in _LANGS:
        return RecursiveCharacterTextSplitter.from_language(
            _LANGS[kind], chunk_size=size, chunk_overlap=overlap, add_start_index=True
        )
    if kind == "rst":
        return RecursiveCharacterTextSplitter.from_language(
            Language.RST, chunk_size=size, chunk_overlap=overlap, add_start_index=True
        )
    # Markdown arrives already cut at headings: split sections on paragraphs, lines, sentences.
    return RecursiveCharacterTextSplitter(
        separators=["\n\n", "\n", ". ", " ", ""],
        chunk_size=size,
        chunk_overlap=overlap,
        add_start_index=True,
        keep_separator="end",
    )


def _sections(text: str) -> list[tuple[tuple[str, ...], int, int]]:
    """(heading path, first line index, end line index exclusive) of each Markdown section."""
    lines = text.split("\n")
    stack: list[tuple[int, str]] = []
    sections: list[tuple[tuple[str, ...], int, int]] = []
    start, fenced = 0, False
    path: tuple[str, ...] = ()
    for i, line in enumerate(lines):
        if _FENCE.match(line):
            fenced = not fenced
            continue
        m = None if fenced else _HEADING.match(line)
        if m:
            if i > start:
                sections.append((path, start, i))
            level = len(m.group(1))
            while stack and stack[-1][0] >= level:
                stack.pop()
            stack.append((level, m.group(2).strip()))
            path = tuple(h for _, h in stack)
            start = i
    sections.append((path, start, len(lines)))
    return sections


def _merged_path(paths: Sequence[tuple[str, ...]]) -> tuple[str, ...]:
    """Common ancestors, then the distinct next-level headings joined: ('Leave', 'Vacation / Requests')."""
    prefix: list[str] = []
    for level in zip(*paths, strict=False):
        if len(set(level)) != 1:
            break
        prefix.append(level[0])
    below = list(dict.fromkeys(p[len(prefix)] for p in paths if len(p) > len(prefix)))
    return (*prefix, " / ".join(below)) if below else tuple(prefix)


def _merge(
    spans: list[tuple[tuple[str, ...], int, int]], size: int
) -> list[tuple[tuple[str, ...], int, int]]:
    """Join neighbouring short sections up to ``size`` characters, so chunks carry enough context."""
    out: list[tuple[tuple[str, ...], int, int]] = []
    group: list[tuple[str, ...]] = []
    begin = end = 0
    for path, a, b in spans:
        if group and b - begin <= size:
            group.append(path)
            end = b
            continue
        if group:
            out.append((_merged_path(group), begin, end))
        group, begin, end = [path], a, b
    if group:
        out.append((_merged_path(group), begin, end))
    return out


def chunk_document(doc: Document, size: int = 1000, overlap: int = 150) -> list[Chunk]:
    """The chunks of ``doc`` (empty sections and whitespace-only pieces are dropped)."""
    text = doc.text
    line_starts = [0] + [m.end() for m in re.finditer("\n", text)]
    pages = [int(p) for p in doc.meta.get("page_starts", "").split(",") if p]

    def line_of(offset: int) -> int:
        return bisect.bisect_right(line_starts, offset)

    kind = doc.meta.get("language", "text") if doc.kind == "code" else doc.kind
    if doc.kind == "markdown":
        # Short neighbouring sections are joined up to half a chunk: enough context, precise citations.
        spans = _merge(
            [
                (path, line_starts[a], line_starts[b] if b < len(line_starts) else len(text))
                for path, a, b in _sections(text)
            ],
            size // 2,
        )
    else:
        spans = [((), 0, len(text))]
    splitter = _splitter(kind, size, overlap)
    chunks: list[Chunk] = []
    for path, begin, end in spans:
        body = text[begin:end]
        if not body.strip():
            continue
        # A section that is only its own heading carries no content worth a chunk.
        if doc.kind == "markdown" and not _HEADING.sub("", body.strip()).strip():
            continue
        pieces = (
            [(body, 0)]
            if len(body) <= size
            else [
                (d.page_content, int(d.metadata.get("start_index", 0)))
                for d in splitter.create_documents([body])
            ]
        )
        for piece, offset in pieces:
            stripped = piece.strip()
            if not stripped or (doc.kind == "markdown" and "\n" not in stripped and _HEADING.match(stripped)):
                continue
            lead = len(piece) - len(piece.lstrip())
            first = line_of(begin + offset + lead)
            last = line_of(begin + offset + lead + len(stripped) - 1)
            page = bisect.bisect_right(pages, first) if pages else None
            chunks.append(Chunk(len(chunks), stripped, path, first, last, page))
    return chunks
