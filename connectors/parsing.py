"""Turn raw bytes (Markdown, reStructuredText, HTML, PDF, source code, text) into indexable text."""

from __future__ import annotations

import io
import logging
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import PurePosixPath
from typing import TYPE_CHECKING

from core.retrieval.connectors import SourceInfo
from core.retrieval.documents import Document

if TYPE_CHECKING:
    from bs4 import Tag

log = logging.getLogger(__name__)

CODE_EXTENSIONS = {
    ".py": "python",
    ".js": "js",
    ".jsx": "js",
    ".ts": "ts",
    ".tsx": "ts",
    ".go": "go",
    ".java": "java",
    ".kt": "kotlin",
    ".rs": "rust",
    ".rb": "ruby",
    ".php": "php",
    ".c": "c",
    ".h": "c",
    ".cpp": "cpp",
    ".hpp": "cpp",
    ".cs": "csharp",
    ".scala": "scala",
    ".swift": "swift",
    ".lua": "lua",
    ".sh": "text",
    ".sql": "text",
    ".yaml": "text",
    ".yml": "text",
    ".toml": "text",
    ".json": "text",
}
DEFAULT_INCLUDE = ["**/*.md", "**/*.markdown", "**/*.rst", "**/*.txt", "**/*.html", "**/*.htm", "**/*.pdf"]
DEFAULT_EXCLUDE = ["**/.git/**", "**/node_modules/**", "**/.venv/**", "**/__pycache__/**"]


class Unreadable(Exception):
    """The content cannot be indexed; ``str(exc)`` is the reason shown in the summary."""


@dataclass
class Parsed:
    """Text plus what the chunker and citations need."""

    text: str
    title: str
    kind: str
    meta: dict[str, str] = field(default_factory=dict)

    def document(
        self, source: SourceInfo, doc_id: str, uri: str, updated_at: datetime, **meta: str
    ) -> Document:
        """The indexable document of ``source`` this parse makes (``meta`` adds to the parser's own)."""
        return Document(
            id=doc_id,
            uri=uri,
            title=self.title,
            text=self.text,
            acl=source.acl,
            updated_at=updated_at,
            source=source.name,
            kind=self.kind,
            meta={**self.meta, **meta},
        )


def kind_for(name: str, content_type: str = "") -> str:
    """markdown | rst | html | pdf | code | text, from a file name or a Content-Type."""
    ct = content_type.split(";")[0].strip().lower()
    if ct == "application/pdf":
        return "pdf"
    if ct in ("text/html", "application/xhtml+xml"):
        return "html"
    if ct == "text/markdown":
        return "markdown"
    suffix = PurePosixPath(name).suffix.lower()
    if suffix in (".md", ".markdown"):
        return "markdown"
    if suffix == ".rst":
        return "rst"
    if suffix in (".html", ".htm"):
        return "html"
    if suffix == ".pdf":
        return "pdf"
    if suffix in CODE_EXTENSIONS:
        return "code"
    return "text"


def _decode(data: bytes) -> str:
    if b"\x00" in data[:8192]:
        raise Unreadable("binary file")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise Unreadable(f"not valid UTF-8 (byte {exc.start})") from exc


def _first_heading(text: str, marker: str = "# ") -> str:
    for line in text.splitlines()[:50]:
        if line.startswith(marker):
            return line[len(marker) :].strip()
    return ""


# Navigation and page chrome: DocBook's Prev/Up/Next bars, Sphinx's related bars and sidebars,
# breadcrumbs, tables of contents, asciidoc's "Last updated" footer. Kept out of chunks and titles.
_CHROME_CLASSES = frozenset(
    {
        "navheader",
        "navfooter",
        "navigation",
        "related",
        "sphinxsidebar",
        "sphinxsidebarwrapper",
        "breadcrumb",
        "breadcrumbs",
        "toc",
        "footer",
        "headerlink",
        "skip-link",
    }
)
_CHROME_IDS = frozenset({"footer", "footer-text", "toc", "sidebar", "navigation", "breadcrumbs"})
# "Page title — Product 3.11 documentation", "Title | Site manual": the site's part is not the page's.
_TITLE_SUFFIX = re.compile(r"\s+(?:—|–|\||::|-)\s+[^—–|]*\b(?:documentation|manual|docs|handbook)\b.*$", re.I)
_FENCE_LINE = re.compile(r"^\s*(```|~~~)", re.M)


def _is_chrome(tag: Tag) -> bool:
    if tag.name in ("nav", "footer"):
        return True
    if tag.name == "header" and tag.find("h1") is None:
        return True
    if str(tag.get("role", "")).lower() == "navigation":
        return True
    classes: list[str] | str = tag.get("class") or []
    if isinstance(classes, str):
        classes = classes.split()
    if any(str(c).lower() in _CHROME_CLASSES for c in classes):
        return True
    return str(tag.get("id", "")).lower() in _CHROME_IDS


def page_title(title: str) -> str:
    """A page title without the site's suffix ('Logging — Python 3.11 documentation' -> 'Logging')."""
    cleaned = _TITLE_SUFFIX.sub("", title).strip()
    return cleaned or title.strip()


def _html(data: bytes) -> tuple[str, str]:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(_decode(data), "html.parser")
    for tag in soup(["script", "style", "noscript", "template", "link", "meta"]):
        tag.decompose()
    for tag in [t for t in soup.find_all(True) if _is_chrome(t)]:
        if not tag.decomposed:
            tag.decompose()
    title = page_title(soup.title.get_text(" ", strip=True)) if soup.title else ""
    if soup.title:
        soup.title.decompose()
    # Preformatted text is fenced, so a shell comment ('# ...') in an example is not a heading.
    for pre in soup.find_all("pre"):
        body = _FENCE_LINE.sub(lambda m: " " + m.group(0), pre.get_text())
        pre.replace_with(f"\n\n```\n{body.strip(chr(10))}\n```\n\n")
    # Headings become Markdown headings so the chunker can keep the section path.
    for level in range(1, 7):
        for h in soup.find_all(f"h{level}"):
            h.replace_with(f"\n\n{'#' * level} {h.get_text(' ', strip=True)}\n\n")
    for br in soup.find_all(["p", "li", "tr", "div", "dt", "dd"]):
        br.insert_after("\n")
    lines = [line.rstrip() for line in soup.get_text().splitlines()]
    text, blank = [], 0
    for line in lines:
        blank = blank + 1 if not line.strip() else 0
        if blank <= 1:
            text.append(line)
    return "\n".join(text).strip(), title


def _pdf(data: bytes) -> tuple[str, str, str]:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError, PyPdfError

    try:
        reader = PdfReader(io.BytesIO(data))
        pages = [page.extract_text() or "" for page in reader.pages]
        title = str(reader.metadata.get("/Title") or "") if reader.metadata else ""
    except (PdfReadError, PyPdfError, ValueError, KeyError, TypeError, AttributeError, OSError) as exc:
        raise Unreadable(f"broken PDF ({type(exc).__name__}: {str(exc)[:80]})") from exc
    starts, parts, line = [], [], 1
    for page in pages:
        starts.append(str(line))
        body = page.strip()
        parts.append(body)
        line += body.count("\n") + 2
    return "\n\n".join(parts), title, ",".join(starts)


def parse(name: str, data: bytes, content_type: str = "") -> Parsed:
    """Readable text from ``data``; raises :class:`Unreadable` with the reason otherwise."""
    if not data.strip():
        raise Unreadable("empty")
    kind = kind_for(name, content_type)
    stem = PurePosixPath(name.rstrip("/")).stem or name
    meta: dict[str, str] = {}
    if kind == "pdf":
        text, title, meta["page_starts"] = _pdf(data)
    elif kind == "html":
        text, title = _html(data)
        title = title or _first_heading(text)
        kind = "markdown"
    else:
        text = _decode(data)
        title = _first_heading(text) if kind == "markdown" else ""
        if kind == "rst":
            lines = text.splitlines()
            title = next(
                (
                    lines[i].strip()
                    for i in range(len(lines) - 1)
                    if lines[i].strip() and set(lines[i + 1].strip()) <= set("=-~#*") and lines[i + 1].strip()
                ),
                "",
            )
        if kind == "code":
            meta["language"] = CODE_EXTENSIONS.get(PurePosixPath(name).suffix.lower(), "text")
    if not text.strip():
        raise Unreadable("no extractable text" if kind == "pdf" else "empty")
    return Parsed(
        text=text,
        title=title or stem.replace("-", " ").replace("_", " ").strip().capitalize(),
        kind=kind,
        meta=meta,
    )
