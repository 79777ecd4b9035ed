"""The listener of `hearth serve` (server/listener.py) against raw sockets on loopback.

A request aiohttp's parser cannot read (a NUL in a header, a bad Content-Length) is the client's
error: one INFO line without the bytes sent, and Hearth's JSON 400; a server error stays at ERROR.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from core.assistant import Assistant
from core.llm.fake import FakeBackend
from core.llm.router import Router
from server.app import create_app
from server.listener import start_listener
from tests.fixtures.core import make_settings

SECRET = "hth_000000000000_donotlogthisdonotlogthis"


async def exchange(url: str, raw: bytes) -> tuple[int, bytes]:
    """Send ``raw`` on a fresh connection; the status and body the server answers (then closes)."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(raw)
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), 10)  # read() to EOF: the server closed it
    finally:
        writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[str]:
    """`hearth serve`'s app with a fake model, behind the real listener on 127.0.0.1:0."""
    settings = make_settings(tmp_path, server={"host": "127.0.0.1", "port": 0})
    assistant = Assistant(settings, Router(local=FakeBackend(), remote=None, routing=settings.llm.routing))
    runner, urls = await start_listener(create_app(settings, assistant=assistant), settings.server)
    try:
        yield urls[0]
    finally:
        await runner.cleanup()


@pytest.mark.parametrize(
    "raw,reason",
    [
        (f"GET /healthz HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer {SECRET}\x00\r\n\r\n", "header value"),
        ("POST /v1/ask HTTP/1.1\r\nHost: h\r\nContent-Length: 1" + "0" * 30 + "x\r\n\r\n", "Content-Length"),
    ],
    ids=["nul-in-a-header", "bad-content-length"],
)
async def test_a_request_that_is_not_http_is_one_info_line_and_a_json_400(
    served: str, caplog: pytest.LogCaptureFixture, raw: str, reason: str
) -> None:
    caplog.set_level(logging.DEBUG)
    status, body = await exchange(served, raw.encode("latin-1"))
    assert status == 400
    error = json.loads(body)["error"]
    assert error["code"] == "bad_request" and reason in error["message"], error
    assert SECRET not in body.decode("utf-8", "replace")
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
    [line] = [r for r in caplog.records if "not valid HTTP" in r.getMessage()]
    assert line.levelno == logging.INFO and line.exc_info is None and reason in line.getMessage()
    assert "\n" not in line.getMessage()
    assert all(SECRET not in r.getMessage() and not r.exc_info for r in caplog.records)
    # The server answers the next client as before.
    status, body = await exchange(served, b"GET /healthz HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
    assert status == 200, body


async def test_a_server_error_is_still_logged_at_error(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    """A handler that fails outside Hearth's middleware reaches aiohttp's handle_error with a 500."""

    async def broken(request: web.Request) -> web.Response:
        raise RuntimeError("a bug in a handler")

    app = web.Application()
    app.router.add_get("/broken", broken)
    settings = make_settings(tmp_path, server={"host": "127.0.0.1", "port": 0})
    runner, urls = await start_listener(app, settings.server)
    try:
        status, _ = await exchange(urls[0], b"GET /broken HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
    finally:
        await runner.cleanup()
    assert status == 500
    [error] = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert error.exc_info is not None and "a bug in a handler" in str(error.exc_info[1])
