"""`hearth lsp --tcp` serves LSP on loopback only."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

from tests.e2e.lsp_rig import HEARTH, write_config


async def _message(reader: asyncio.StreamReader) -> dict[str, object]:
    length = 0
    while (line := await reader.readline()) not in (b"\r\n", b""):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    return json.loads(await reader.readexactly(length))  # type: ignore[no-any-return]


async def test_tcp_mode_binds_loopback_and_speaks_lsp(tmp_path: Path) -> None:
    config = write_config(tmp_path, {"local": {"enabled": False}})
    proc = await asyncio.create_subprocess_exec(
        HEARTH,
        "--log-level",
        "INFO",
        "--config",
        str(config),
        "lsp",
        "--tcp",
        "--port",
        "0",
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stderr is not None
        serving = None
        while serving is None:
            line = (await asyncio.wait_for(proc.stderr.readline(), 60)).decode()
            assert line, "the server exited before serving"
            serving = re.search(r"Serving on \('([\d.]+)', (\d+)\)", line)
        host, port = serving.group(1), int(serving.group(2))
        assert host == "127.0.0.1"
        reader, writer = await asyncio.open_connection(host, port)
        body = json.dumps(
            {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "initialize",
                "params": {"processId": None, "rootUri": None, "capabilities": {}},
            }
        ).encode()
        writer.write(b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        await writer.drain()
        reply = await asyncio.wait_for(_message(reader), 30)
        commands = reply["result"]["capabilities"]["executeCommandProvider"]["commands"]  # type: ignore[index]
        assert "hearth.explain" in commands and "hearth.runTests" in commands
        writer.close()
    finally:
        proc.kill()
        await proc.wait()
