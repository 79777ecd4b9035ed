"""The ``http`` connector: URLs and/or a sitemap, fetched with aiohttp (ETag / Last-Modified aware)."""

from __future__ import annotations

import asyncio
import logging
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import aiohttp
from pydantic import BaseModel, ConfigDict, Field, field_validator

from connectors.globs import matches
from connectors.parsing import Unreadable, parse
from core.errors import ConnectorError
from core.jsontypes import JsonObject
from core.retrieval.connectors import Item, ScanContext, SourceInfo
from core.retrieval.documents import Skipped, Unchanged

log = logging.getLogger(__name__)

# What the cursor keeps per page between runs: its ETag and Last-Modified, for a conditional GET.
PageMemo = dict[str, dict[str, str]]


def _memo(cursor: JsonObject, url: str) -> dict[str, str]:
    """What the last complete run kept for ``url`` (nothing when the cursor holds something else)."""
    pages = cursor.get("pages")
    memo = pages.get(url) if isinstance(pages, dict) else None
    return {k: v for k, v in memo.items() if isinstance(v, str)} if isinstance(memo, dict) else {}


class HttpOptions(BaseModel):
    """Options of a ``type: http`` source."""

    model_config = ConfigDict(extra="forbid")

    urls: list[str] = Field(default_factory=list, description="Pages to index.")
    sitemap: str | None = Field(
        None, description="A sitemap.xml whose <loc> pages are indexed (index files too)."
    )
    exclude: list[str] = Field(default_factory=list, description="URL globs to leave out.")
    timeout_s: float = Field(20.0, gt=0, description="Per-request timeout.")
    concurrency: int = Field(4, ge=1, le=32, description="Pages fetched at once.")
    user_agent: str = Field("HearthIndexer/0.1", description="User-Agent header.")

    @field_validator("urls")
    @classmethod
    def _http_only(cls, urls: list[str]) -> list[str]:
        for url in urls:
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"'{url}' is not an http(s) URL")
        return urls


def _http_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        try:
            parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


class HttpConnector:
    """Fetches pages; a page answering 304 Not Modified is reported Unchanged without being re-read."""

    Options = HttpOptions

    def __init__(self, source: SourceInfo, options: HttpOptions) -> None:
        if not options.urls and not options.sitemap:
            raise ConnectorError(f"Source '{source.name}' (type http): set 'urls' or 'sitemap'.")
        self.source = source
        self.options = options

    async def _sitemap(
        self, session: aiohttp.ClientSession, url: str, depth: int = 0
    ) -> list[tuple[str, str]]:
        """(loc, lastmod) pairs of a sitemap, following sitemap index files one level deep."""
        async with session.get(url) as resp:
            if resp.status != 200:
                raise ConnectorError(
                    f"Source '{self.source.name}': sitemap {url} answered HTTP {resp.status}."
                )
            body = await resp.read()
        try:
            root = ET.fromstring(body)
        except ET.ParseError as exc:
            raise ConnectorError(
                f"Source '{self.source.name}': sitemap {url} is not valid XML ({exc})."
            ) from exc
        ns = "{http://www.sitemaps.org/schemas/sitemap/0.9}"
        pages: list[tuple[str, str]] = []
        for node in root:
            loc = (node.findtext(f"{ns}loc") or node.findtext("loc") or "").strip()
            lastmod = (node.findtext(f"{ns}lastmod") or node.findtext("lastmod") or "").strip()
            if not loc:
                continue
            if node.tag.endswith("sitemap") and depth == 0:
                pages.extend(await self._sitemap(session, loc, depth + 1))
            else:
                pages.append((loc, lastmod))
        return pages

    async def _fetch(
        self, session: aiohttp.ClientSession, url: str, lastmod: str, ctx: ScanContext, cursor: PageMemo
    ) -> Item:
        doc_id = f"{self.source.name}:{url}"
        headers: dict[str, str] = {}
        previous = _memo(ctx.cursor, url)
        if ctx.known.get(doc_id):
            if previous.get("etag"):
                headers["If-None-Match"] = previous["etag"]
            if previous.get("last_modified"):
                headers["If-Modified-Since"] = previous["last_modified"]
        try:
            async with session.get(url, headers=headers) as resp:
                if resp.status == 304:
                    cursor[url] = previous
                    return Unchanged(doc_id)
                if resp.status != 200:
                    return Skipped(url, f"HTTP {resp.status}")
                length = resp.content_length or 0
                if length > self.source.max_file_bytes:
                    return Skipped(url, f"larger than {self.source.max_file_bytes / 1_048_576:g} MB")
                data = await resp.content.read(self.source.max_file_bytes + 1)
                if len(data) > self.source.max_file_bytes:
                    return Skipped(url, f"larger than {self.source.max_file_bytes / 1_048_576:g} MB")
                etag, modified = resp.headers.get("ETag"), resp.headers.get("Last-Modified")
                content_type = resp.headers.get("Content-Type", "")
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            reason = type(exc).__name__ if isinstance(exc, TimeoutError) else str(exc) or type(exc).__name__
            return Skipped(url, f"unreachable ({reason[:120]})")
        try:
            parsed = await asyncio.to_thread(
                parse, url.rstrip("/").rsplit("/", 1)[-1] or url, data, content_type
            )
        except Unreadable as exc:
            return Skipped(url, str(exc))
        cursor[url] = {k: v for k, v in (("etag", etag), ("last_modified", modified)) if v}
        updated = _http_time(modified) or _http_time(lastmod) or datetime.now(UTC)
        return parsed.document(self.source, doc_id, url, updated)

    async def scan(self, ctx: ScanContext) -> AsyncIterator[Item]:
        """Fetch every page (a few at a time); unreachable pages are skipped and keep their last version."""
        timeout = aiohttp.ClientTimeout(total=self.options.timeout_s)
        cursor: PageMemo = {}
        async with aiohttp.ClientSession(
            timeout=timeout, headers={"User-Agent": self.options.user_agent}
        ) as session:
            pages = [(u, "") for u in self.options.urls]
            if self.options.sitemap:
                try:
                    pages.extend(await self._sitemap(session, self.options.sitemap))
                except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                    raise ConnectorError(
                        f"Source '{self.source.name}': sitemap {self.options.sitemap} is unreachable ({exc})."
                    ) from exc
            seen: set[str] = set()
            todo = []
            for url, lastmod in pages:
                if url not in seen and not matches(url, self.options.exclude):
                    seen.add(url)
                    todo.append((url, lastmod))
            limit = asyncio.Semaphore(self.options.concurrency)

            async def one(url: str, lastmod: str) -> Item:
                async with limit:
                    return await self._fetch(session, url, lastmod, ctx, cursor)

            tasks = [asyncio.ensure_future(one(u, m)) for u, m in todo]
            try:
                for task in tasks:
                    item = await task
                    if isinstance(item, Skipped) and item.reason.startswith(("unreachable", "HTTP 5")):
                        # A transient failure must not delete what was indexed before.
                        item = Skipped(item.uri, item.reason, keep_id=f"{self.source.name}:{item.uri}")
                    yield item
            finally:
                for task in tasks:
                    task.cancel()
        ctx.cursor["pages"] = {url: {**memo} for url, memo in cursor.items()}
