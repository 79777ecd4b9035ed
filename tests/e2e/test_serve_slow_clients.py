"""The real `hearth serve` against slow and flooding clients on loopback (issue 15).

A slowloris attack (hundreds of connections that each send half a request header and wait) used
to hold the server until it ran out of file descriptors; a single slow client stayed open for
minutes. Here the same attack runs against `hearth serve` with a small connection cap and short
deadlines, while /healthz is asked from fresh connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from typing import Any
from urllib.parse import urlsplit

import pytest

# No model: /healthz, the listener and the REST auth are what these tests exercise.
NO_MODEL: dict[str, Any] = {"llm": {"local": {"enabled": False}}}
CAP = 48


def sections(**server: Any) -> dict[str, Any]:
    return NO_MODEL | {
        "server": {"header_timeout_s": 2.0, "body_timeout_s": 2.0, "max_connections": CAP} | server
    }


async def connect(url: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    parts = urlsplit(url)
    return await asyncio.open_connection(parts.hostname, parts.port)


async def healthz(url: str) -> bytes:
    """The status line of /healthz asked on a fresh connection."""
    reader, writer = await connect(url)
    try:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: hearth\r\nConnection: close\r\n\r\n")
        await writer.drain()
        return (await asyncio.wait_for(reader.read(), 10)).split(b"\r\n", 1)[0]
    finally:
        writer.close()


async def closed_by_server(reader: asyncio.StreamReader, within: float) -> bool:
    """Whether the server closes the connection (EOF or reset) without having answered."""
    try:
        data = await asyncio.wait_for(reader.read(65536), within)
    except ConnectionError:
        return True
    except TimeoutError:
        return False
    return data == b""


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


@pytest.mark.slow
async def test_hundreds_of_half_sent_headers_leave_healthz_answering(hearth_serve: Any) -> None:
    server = await hearth_serve(sections())
    pid = server.proc.pid
    baseline = open_fds(pid)
    held: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    try:
        for _ in range(400):
            reader, writer = await connect(server.url)
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: hearth\r\nX-Slow: ")
            held.append((reader, writer))
        await asyncio.gather(*(w.drain() for _, w in held), return_exceptions=True)  # evicted ones reset
        # Every fresh request is answered while the 400 are open …
        for _ in range(5):
            assert await healthz(server.url) == b"HTTP/1.1 200 OK"
        # … and the server holds at most its cap of client connections, not 400.
        assert open_fds(pid) - baseline <= CAP + 8, open_fds(pid) - baseline
        # None of the half-sent requests was ever answered: each one was closed.
        results = await asyncio.gather(*(closed_by_server(r, 15) for r, _ in held))
        assert all(results), f"{results.count(False)} slow connections still open"
        assert await healthz(server.url) == b"HTTP/1.1 200 OK"
    finally:
        for _, writer in held:
            writer.close()
    # The attack did not flood the log (the old server wrote 118 MB of errors in 40 s).
    assert sum(len(line) for line in server.log_lines) < 200_000


@pytest.mark.slow
async def test_a_client_dribbling_its_header_is_cut_off(hearth_serve: Any) -> None:
    server = await hearth_serve(sections())
    reader, writer = await connect(server.url)
    try:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: hearth\r\n")
        cut = False
        # One header byte every 0.2 s would take a minute to finish the request: the deadline is 2 s.
        for byte in b"X-Slow: " + b"a" * 300:
            try:
                writer.write(bytes([byte]))
                await writer.drain()
            except ConnectionError:
                cut = True
                break
            if await closed_by_server(reader, 0.2):
                cut = True
                break
        assert cut, "a client sending one header byte every 0.2 s was kept for a minute"
    finally:
        writer.close()
    assert await healthz(server.url) == b"HTTP/1.1 200 OK"


@pytest.mark.slow
async def test_a_request_body_that_never_finishes_is_cut_off(hearth_serve: Any) -> None:
    server = await hearth_serve(sections())
    token = await server.token("alice")
    reader, writer = await connect(server.url)
    try:
        head = (
            "POST /v1/ask HTTP/1.1\r\nHost: hearth\r\nContent-Type: application/json\r\n"
            f"Authorization: Bearer {token}\r\nContent-Length: 10000\r\n\r\n"
        )
        writer.write(head.encode() + b'{"question": "')
        await writer.drain()
        cut = False
        for _ in range(150):  # 30 s of dribbling against a 2 s body deadline
            if await closed_by_server(reader, 0.2):
                cut = True
                break
            with contextlib.suppress(ConnectionError):
                writer.write(b"a")
                await writer.drain()
        assert cut, "a request body arriving one byte every 0.2 s was waited for"
    finally:
        writer.close()


async def test_a_flood_of_connections_cannot_exhaust_file_descriptors(hearth_serve: Any) -> None:
    """Connections that send nothing at all, opened faster than the deadline closes them."""
    server = await hearth_serve(sections(header_timeout_s=30.0))
    pid = server.proc.pid
    baseline = open_fds(pid)
    held = []
    try:
        for _ in range(300):
            held.append(await connect(server.url))
        assert await healthz(server.url) == b"HTTP/1.1 200 OK"
        assert open_fds(pid) - baseline <= CAP + 8
    finally:
        for _, writer in held:
            writer.close()


@pytest.mark.parametrize(
    ("args", "debug_logged"),
    [(("--log-level", "DEBUG"), True), (("--log-level", "ERROR"), False), ((), False)],
)
async def test_serve_log_level_is_honoured(
    hearth_serve: Any, args: tuple[str, ...], debug_logged: bool
) -> None:
    server = await hearth_serve(NO_MODEL, *args)
    assert await healthz(server.url) == b"HTTP/1.1 200 OK"
    await server.stop()
    levels = {json.loads(line)["level"] for line in server.log_lines if line.startswith("{")}
    assert ("DEBUG" in levels) is debug_logged, levels
    if args == ("--log-level", "ERROR"):
        assert levels <= {"ERROR", "CRITICAL"}, levels
    else:
        assert "INFO" in levels  # the default is log_level: INFO from hearth.yaml
