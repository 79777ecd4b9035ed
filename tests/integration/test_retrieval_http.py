"""The http connector against a loopback aiohttp server: sitemap, ETag/304, Last-Modified, failures."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from core.config import Settings
from core.retrieval.sync import Indexer
from tests.fixtures.core import make_settings
from tests.fixtures.retrieval import HashEmbedder


class Site:
    """Pages served with ETags; records the conditional headers it receives."""

    def __init__(self) -> None:
        self.pages: dict[str, tuple[str, str]] = {
            "/handbook/leave": (
                "text/html",
                "<html><head><title>Leave</title></head><body><h1>Leave</h1>"
                "<p>New employees get 20 vacation days.</p></body></html>",
            ),
            "/handbook/deploys.md": ("text/markdown", "# Deploys\n\nRoll back with /deploy api rollback.\n"),
            "/handbook/logo.png": ("text/plain", "\x00\x01binary"),
        }
        self.requests: list[tuple[str, str | None, str | None]] = []
        self.down: set[str] = set()

    def etag(self, path: str) -> str:
        return '"' + str(abs(hash(self.pages[path][1]))) + '"'

    def app(self, base: list[str]) -> web.Application:
        async def page(request: web.Request) -> web.StreamResponse:
            path = request.path
            self.requests.append(
                (path, request.headers.get("If-None-Match"), request.headers.get("If-Modified-Since"))
            )
            if path == "/sitemap.xml":
                urls = "".join(
                    f"<url><loc>{base[0]}{p}</loc><lastmod>2026-03-01</lastmod></url>" for p in self.pages
                )
                return web.Response(
                    text=f'<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/'
                    f'sitemap/0.9">{urls}</urlset>',
                    content_type="application/xml",
                )
            if path in self.down:
                return web.Response(status=503)
            if path not in self.pages:
                return web.Response(status=404)
            ctype, body = self.pages[path]
            tag = self.etag(path)
            if request.headers.get("If-None-Match") == tag:
                return web.Response(status=304, headers={"ETag": tag})
            return web.Response(
                text=body,
                content_type=ctype,
                headers={"ETag": tag, "Last-Modified": "Sun, 01 Mar 2026 10:00:00 GMT"},
            )

        app = web.Application()
        app.router.add_get("/{tail:.*}", page)
        return app


async def run(settings: Settings) -> Any:
    indexer = Indexer(settings, embedder=HashEmbedder())
    try:
        return (await indexer.sync())[0]
    finally:
        await indexer.aclose()


async def test_http_sitemap_etags_and_failures(
    aiohttp_server: Any, tmp_path: Any, unused_tcp_port: int
) -> None:
    site = Site()
    base: list[str] = []
    server = await aiohttp_server(site.app(base), port=0)
    base.append(str(server.make_url("")).rstrip("/"))
    dead = f"http://127.0.0.1:{unused_tcp_port}/gone"
    settings = make_settings(
        tmp_path,
        sources=[
            {
                "name": "site",
                "type": "http",
                "sitemap": f"{base[0]}/sitemap.xml",
                "urls": [f"{base[0]}/missing", dead],
                "acl": ["group:eng"],
                "timeout_s": 5,
            }
        ],
    )
    first = await run(settings)
    assert first.added == 2 and first.error is None
    reasons = dict(first.skipped)
    assert reasons[f"{base[0]}/missing"] == "HTTP 404"
    assert reasons[dead].startswith("unreachable")
    assert reasons[f"{base[0]}/handbook/logo.png"] == "binary file"

    site.requests.clear()
    second = await run(settings)
    assert (second.added, second.updated, second.unchanged, second.chunks) == (0, 0, 2, 0)
    conditional = {
        p: etag for p, etag, _ in site.requests if p.startswith("/handbook/") and p != "/handbook/logo.png"
    }
    assert conditional == {
        "/handbook/leave": site.etag("/handbook/leave"),
        "/handbook/deploys.md": site.etag("/handbook/deploys.md"),
    }

    site.pages["/handbook/leave"] = (
        "text/html",
        "<html><body><h1>Leave</h1><p>Now 25 days.</p></body></html>",
    )
    site.down.add("/handbook/deploys.md")
    third = await run(settings)
    # A page that is temporarily down keeps its indexed version.
    assert (third.updated, third.deleted, third.unchanged) == (1, 0, 0)
    assert dict(third.skipped)[f"{base[0]}/handbook/deploys.md"] == "HTTP 503"

    site.down.clear()
    del site.pages["/handbook/deploys.md"]  # gone from the sitemap too
    fourth = await run(settings)
    assert (fourth.deleted, fourth.unchanged) == (1, 1)
