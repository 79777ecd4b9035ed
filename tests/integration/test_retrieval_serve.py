"""One owner of the index: `hearth index` and `hearth search` while `hearth serve` runs (real processes).

The server owns the embedded store (Qdrant Edge); the CLI finds it through the owner file and
sends its work there, the server re-syncs a source on its schedule, and after the server stops
the CLI opens the (cleanly closed) store itself.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.fixtures.openai_server import FakeOpenAI
from tests.fixtures.retrieval import ACLS, write_corpus
from tests.fixtures.serve import HEARTH, _env

pytestmark = pytest.mark.slow


async def hearth(config: Path, *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *HEARTH,
        "--config",
        str(config),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=_env(),
    )
    out, err = await asyncio.wait_for(proc.communicate(), 240)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def until(check: Any, within_s: float = 90.0) -> Any:
    """Poll ``check()`` (async) until it returns something truthy."""
    deadline = time.monotonic() + within_s
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.2)


async def test_hearth_index_and_search_go_through_the_running_server(
    hearth_serve: Any, openai_server: FakeOpenAI, tmp_path: Path
) -> None:
    folders = write_corpus(tmp_path / "docs")
    sources = [
        {"name": s, "type": "files", "path": str(p), "acl": ACLS[s], "sync_every": "2s" if s == "eng" else 0}
        for s, p in folders.items()
    ]
    server = await hearth_serve(
        {
            "llm": {
                "local": {"enabled": False},
                "remote": {"base_url": openai_server.base_url, "api_key": "sk-test", "max_retries": 0},
            },
            "sources": sources,
            "retrieval": {"chunk_size": 400, "chunk_overlap": 40},
            # This test polls /v1/index; it is about who owns the index, not the per-minute limit.
            "server": {"rate_limit_per_minute": 10000},
        },
        "--log-format",
        "text",
    )
    home = tmp_path / "home"
    owner_path = home / "qdrant" / "hearth_docs.owner.json"

    async def announced() -> bool:
        return owner_path.exists()

    await until(announced)
    owner = json.loads(owner_path.read_text())
    assert owner_path.stat().st_mode & 0o077 == 0  # the owner's token is for this user only

    code, out, err = await hearth(server.config, "index", "--json")
    assert code == 0, err
    reports = {r["source"]: r for r in json.loads(out)}
    assert (reports["public"]["added"], reports["hr"]["added"]) == (2, 1)
    # 'eng' syncs every 2 s on the server's schedule: it may have been indexed already.
    assert reports["eng"]["added"] + reports["eng"]["unchanged"] == 2
    # The work was done by the server, not by this process (which would have failed on the lock).
    assert "in use by another Hearth process" not in err

    code, out, err = await hearth(server.config, "search", "vacation days", "--json", "--acl", "public")
    assert code == 0, err
    hits = json.loads(out)
    assert hits and hits[0]["doc_id"] == "public:leave.md"
    assert all(h["doc_id"].startswith("public:") for h in hits)
    code, out, _ = await hearth(server.config, "search", "salary bands", "--json", "--k", "1")
    assert json.loads(out)[0]["doc_id"] == "hr:salaries.md"  # the operator sees everything

    # `hearth ask` (the CLI's own engine) retrieves through the server too.
    code, out, err = await hearth(
        server.config, "ask", "How many vacation days do new employees get?", "--json"
    )
    assert code == 0, err
    assert any(c["uri"].endswith("leave.md") for c in json.loads(out)["citations"])

    code, out, _ = await hearth(server.config, "index", "--json", "--source", "public")
    assert code == 0 and json.loads(out)[0]["unchanged"] == 2

    # The server re-syncs 'eng' on its schedule (every 2 s here): a new page appears by itself.
    (folders["eng"] / "runbook.md").write_text(
        "# Runbook\n\nRestart the flux capacitor with /flux restart.\n"
    )
    headers = {"Authorization": f"Bearer {owner['token']}"}
    async with aiohttp.ClientSession() as session:

        async def resynced() -> dict[str, Any] | None:
            async with session.get(server.url + "/v1/index", headers=headers) as resp:
                if resp.status != 200:  # e.g. 429 (the token's per-minute limit) while polling: ask again
                    await asyncio.sleep(1)
                    return None
                status: dict[str, Any] = await resp.json()
            done = any(r["source"] == "eng" and r["added"] == 1 for r in status["last_reports"])
            return status if done else None

        status = await until(resynced)  # the status that showed the re-sync, not a second request
        assert status["store"]["kind"] == "edge" and status["store"]["points"] >= 6
        by_name = {s["name"]: s for s in status["sources"]}
        assert by_name["public"]["next_sync"] is None and by_name["eng"]["next_sync"] is not None

        # Indexing is for admin tokens only.
        guest = await server.token("gus")
        async with session.post(
            server.url + "/v1/index", json={}, headers={"Authorization": f"Bearer {guest}"}
        ) as resp:
            assert resp.status == 403
        async with session.post(
            server.url + "/v1/index", json={"sources": ["jira"]}, headers=headers
        ) as resp:
            assert resp.status == 404 and "Unknown source 'jira'" in (await resp.json())["message"]

    assert await server.stop() == 0
    assert not owner_path.exists()
    # Stopped: the CLI opens the store itself, and finds what the server wrote (flushed and closed).
    code, out, err = await hearth(
        server.config, "search", "flux capacitor restart", "--json", "--mode", "bm25"
    )
    assert code == 0, err
    assert json.loads(out)[0]["doc_id"] == "eng:runbook.md"


async def test_the_owner_file_and_its_token_live_exactly_as_long_as_the_server(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    import os

    from core.assistant import Assistant
    from core.llm.fake import FakeBackend
    from core.llm.router import Router
    from core.retrieval.owner import ADMIN, find_owner, owner_file
    from server.app import create_app
    from server.auth import TOKENS
    from server.indexing import announce
    from tests.fixtures.retrieval import corpus_settings

    settings = corpus_settings(tmp_path)
    assistant = Assistant(
        settings, Router(local=FakeBackend(reply="x"), remote=None, routing=settings.llm.routing)
    )
    client = await aiohttp_client(create_app(settings, assistant=assistant))
    tokens = client.app[TOKENS]
    # A server killed with -9 left its announcement and its token behind.
    _, stale = await tokens.create("hearth-serve", [ADMIN])
    path = owner_file(settings)
    assert path is not None
    path.parent.mkdir(parents=True, exist_ok=True)
    dead = 2**22 + 12345  # beyond pid_max's default: no such process
    path.write_text(json.dumps({"pid": dead, "url": "http://127.0.0.1:9", "token": stale}))
    assert find_owner(settings) is None  # a dead owner is no owner

    await announce(client.app, [str(client.make_url("")).rstrip("/")])
    assert await tokens.verify(stale) is None  # revoked
    owner = json.loads(path.read_text())
    assert owner["pid"] == os.getpid()
    info = await tokens.verify(owner["token"])
    assert info is not None and ADMIN in info.acl
    resp = await client.get("/v1/index", headers={"Authorization": f"Bearer {owner['token']}"})
    assert resp.status == 200 and (await resp.json())["store"]["kind"] == "edge"

    await client.close()
    assert not path.exists()
    assert await tokens.verify(owner["token"]) is None
