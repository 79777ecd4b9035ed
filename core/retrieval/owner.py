"""Who owns an embedded store, and the client that goes through the owner.

An embedded store (Qdrant Edge, or local mode) is opened by one process. While `hearth serve`
runs it is that process: it writes ``<store.path>/<collection>.owner.json`` (mode 0600: its pid,
its URL and a bearer token it minted for itself, holding ``hearth:admin``) and removes it on
shutdown. `hearth index`, `hearth search` and `hearth eval` find the file and send their work to
the server's ``/v1/index`` endpoints instead of opening the files; without a live owner they open
the store themselves. With ``store.url`` (a Qdrant server) every process writes directly::

    owner = find_owner(settings)
    if owner is not None:
        reports = await IndexClient(owner).index(["handbook"], progress=bar)
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import aiohttp

from core.contracts import Hit, Retriever
from core.errors import RetrievalError
from core.jsontypes import JsonObject, JsonValue
from core.retrieval.configured import IndexConfigured

if TYPE_CHECKING:
    from core.retrieval.rerank import Reranker

    # Not at run time: the indexer pulls in the store backends (qdrant-client alone imports in about
    # a second), which a `hearth search` going through the server never uses.
    from core.retrieval.sync import Progress, SourceReport

log = logging.getLogger(__name__)

ADMIN = "hearth:admin"  # the ACL token that may index and search as the operator through the API
TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=None)


@dataclass(frozen=True)
class Owner:
    """The `hearth serve` that owns an embedded store."""

    pid: int
    url: str
    token: str
    path: Path


def owner_file(settings: IndexConfigured) -> Path | None:
    """Where the owner of these settings' embedded store announces itself (None with store.url)."""
    if settings.store.url:
        return None
    return settings.store_path / f"{settings.store.collection}.owner.json"


def write_owner(settings: IndexConfigured, url: str, token: str) -> Path | None:
    """Announce this process as the store's owner (readable only by the user running it)."""
    path = owner_file(settings)
    if path is None:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump({"pid": os.getpid(), "url": url, "token": token}, out)
    os.replace(tmp, path)
    return path


def remove_owner(settings: IndexConfigured) -> None:
    """Withdraw this process's announcement (only its own)."""
    path = owner_file(settings)
    found = read_owner(path) if path is not None else None
    if path is not None and found is not None and found.pid == os.getpid():
        path.unlink(missing_ok=True)


def read_owner(path: Path) -> Owner | None:
    """The owner file's content, alive or not (None when missing or unreadable)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return Owner(int(data["pid"]), str(data["url"]), str(data["token"]), path)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


def find_owner(settings: IndexConfigured) -> Owner | None:
    """The live `hearth serve` owning this store, or None (a stale file from a killed one is ignored)."""
    path = owner_file(settings)
    if path is None or not path.exists():
        return None
    owner = read_owner(path)
    if owner is None or owner.pid == os.getpid() or not _alive(owner.pid):
        return None
    return owner


def _report(data: JsonObject) -> SourceReport:
    from core.retrieval.sync import SourceReport

    skipped = data.get("skipped")
    items = skipped if isinstance(skipped, list) else []
    pairs = [(str(s.get("uri", "")), str(s.get("reason", ""))) for s in items if isinstance(s, dict)]
    report = SourceReport(str(data.get("source", "")))
    for name in ("added", "updated", "deleted", "unchanged", "chunks"):
        value = data.get(name)
        setattr(report, name, int(value) if isinstance(value, int | float) else 0)
    seconds = data.get("seconds")
    report.seconds = float(seconds) if isinstance(seconds, int | float) else 0.0
    error = data.get("error")
    report.error = str(error) if error else None
    report.skipped = pairs
    return report


class IndexClient:
    """Talks to the owning `hearth serve`: index with progress, search as anyone, read the status."""

    def __init__(self, owner: Owner) -> None:
        self.owner = owner

    def _headers(self, stream: bool = False) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self.owner.token}", "X-Hearth-Surface": "cli"}
        if stream:
            headers["Accept"] = "text/event-stream"
        return headers

    async def _post(self, path: str, body: JsonObject) -> JsonObject:
        try:
            async with (
                aiohttp.ClientSession(timeout=TIMEOUT) as session,
                session.post(self.owner.url + path, json=body, headers=self._headers()) as resp,
            ):
                data = await resp.json(content_type=None)
                if resp.status != 200:
                    raise RetrievalError(_message(data, resp.status, self.owner))
                return data if isinstance(data, dict) else {}
        except aiohttp.ClientError as exc:
            raise RetrievalError(_unreachable(self.owner, exc)) from exc

    async def status(self) -> JsonObject:
        """``GET /v1/index``: the store in use, its size, and each source's sync schedule."""
        try:
            async with (
                aiohttp.ClientSession(timeout=TIMEOUT) as session,
                session.get(self.owner.url + "/v1/index", headers=self._headers()) as resp,
            ):
                data = await resp.json(content_type=None)
                if resp.status != 200:
                    raise RetrievalError(_message(data, resp.status, self.owner))
                return data if isinstance(data, dict) else {}
        except aiohttp.ClientError as exc:
            raise RetrievalError(_unreachable(self.owner, exc)) from exc

    async def index(
        self, names: Sequence[str] = (), progress: Progress | None = None, *, rebuild: bool = False
    ) -> list[SourceReport]:
        """``POST /v1/index`` streamed: progress events drive ``progress``; returns the reports."""
        body: JsonObject = {"sources": list(names), "rebuild": rebuild}
        try:
            async with (
                aiohttp.ClientSession(timeout=TIMEOUT) as session,
                session.post(self.owner.url + "/v1/index", json=body, headers=self._headers(True)) as resp,
            ):
                if resp.status != 200:
                    raise RetrievalError(
                        _message(await resp.json(content_type=None), resp.status, self.owner)
                    )
                event = ""
                async for raw in resp.content:
                    line = raw.decode("utf-8").rstrip("\r\n")
                    if line.startswith("event:"):
                        event = line[6:].strip()
                    elif line.startswith("data:"):
                        data = json.loads(line[5:])
                        if event == "begin" and progress:
                            progress.begin(str(data["source"]), int(data["total_chunks"]))
                        elif event == "advance" and progress:
                            progress.advance(int(data["chunks"]))
                        elif event == "done":
                            return [_report(r) for r in data.get("reports", []) if isinstance(r, dict)]
                        elif event == "error":
                            raise RetrievalError(f"Indexing in 'hearth serve' failed: {data.get('message')}")
        except aiohttp.ClientError as exc:
            raise RetrievalError(_unreachable(self.owner, exc)) from exc
        raise RetrievalError(
            f"'hearth serve' at {self.owner.url} ended the index run without a result (see its log)."
        )

    async def search(
        self, query: str, *, acl: frozenset[str] | None, k: int, mode: str | None = None
    ) -> list[Hit]:
        """``POST /v1/index/search``: hits for someone holding ``acl`` (None: the operator)."""
        tokens: list[JsonValue] | None = [*sorted(acl)] if acl is not None else None
        body: JsonObject = {"query": query, "k": k, "acl": tokens, "mode": mode}
        data = await self._post("/v1/index/search", body)
        hits = data.get("hits")
        out = []
        for h in hits if isinstance(hits, list) else []:
            if isinstance(h, dict):
                out.append(
                    Hit(
                        chunk_id=str(h.get("chunk_id", "")),
                        doc_id=str(h.get("doc_id", "")),
                        uri=str(h.get("uri", "")),
                        title=str(h.get("title", "")),
                        text=str(h.get("text", "")),
                        score=float(_number(h.get("score"))),
                        location=str(h.get("location", "")),
                        source=str(h.get("source", "")),
                    )
                )
        return out


class RemoteRetriever:
    """A Retriever (``search(query, acl, k, mode)``) answered by the owning `hearth serve`."""

    def __init__(self, owner: Owner, mode: str = "hybrid") -> None:
        self.client = IndexClient(owner)
        self.mode = mode

    async def search(
        self, query: str, *, acl: frozenset[str] | None, k: int, mode: str | None = None
    ) -> list[Hit]:
        """The ``k`` best chunks ``acl`` may read, searched by the server."""
        return await self.client.search(query, acl=acl, k=k, mode=mode)

    async def aclose(self) -> None:
        """Nothing held between calls."""


def retriever_for(settings: IndexConfigured, *, reranker: Reranker | None = None) -> Retriever:
    """The docs retriever for a process that is not the owner: through the owner, else its own.

    ``reranker``: the process's shared one (`hearth serve` lends every retriever the same reranker).
    """
    owner = find_owner(settings)
    if owner is not None:
        return RemoteRetriever(owner, settings.retrieval.mode)
    from core.retrieval.search import DocsRetriever

    return DocsRetriever(settings, reranker=reranker)


def _number(value: JsonValue) -> float:
    return float(value) if isinstance(value, int | float) else 0.0


def _message(data: object, status: int, owner: Owner) -> str:
    message = data.get("message") if isinstance(data, dict) else None
    return f"'hearth serve' at {owner.url} refused ({status}): {message or 'no reason given'}"


def _unreachable(owner: Owner, exc: Exception) -> str:
    return (
        f"'hearth serve' (pid {owner.pid}) owns the vector store but does not answer at {owner.url} ({exc}) — "
        "check it is healthy, or stop it to work on the store directly."
    )
