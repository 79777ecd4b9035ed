"""The ``git`` connector: the files of one branch of a local repository, incremental by commit."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from connectors.globs import selected
from connectors.parsing import DEFAULT_EXCLUDE, DEFAULT_INCLUDE, Unreadable, parse
from core.errors import ConnectorError
from core.retrieval.connectors import Item, ScanContext, SourceInfo
from core.retrieval.documents import Skipped, Unchanged

log = logging.getLogger(__name__)


class GitOptions(BaseModel):
    """Options of a ``type: git`` source."""

    model_config = ConfigDict(extra="forbid")

    path: Path = Field(
        description="Local repository (a clone; 'git fetch' it on a schedule to follow a remote)."
    )
    branch: str = Field("HEAD", description="Branch, tag or commit whose files are indexed.")
    include: list[str] = Field(default_factory=lambda: list(DEFAULT_INCLUDE), description="Globs to index.")
    exclude: list[str] = Field(
        default_factory=lambda: list(DEFAULT_EXCLUDE), description="Globs to leave out."
    )
    base_url: str | None = Field(
        None, description="Cite files as base_url + path (e.g. https://git.example.com/wiki/blob/main)."
    )


class GitConnector:
    """Reads blobs straight from the branch (not the work tree), with each file's last commit time."""

    Options = GitOptions

    def __init__(self, source: SourceInfo, options: GitOptions) -> None:
        self.source = source
        self.options = options

    async def _git(self, *args: str, stdin: bytes | None = None, check: bool = True) -> bytes:
        try:
            proc = await asyncio.create_subprocess_exec(
                "git",
                "-c",
                "core.quotepath=off",
                "-C",
                str(self.options.path),
                *args,
                stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        except FileNotFoundError as exc:
            raise ConnectorError("The git connector needs the 'git' program — install git.") from exc
        out, err = await proc.communicate(stdin)
        if check and proc.returncode != 0:
            raise ConnectorError(
                f"Source '{self.source.name}': git {args[0]} failed in {self.options.path}: "
                f"{err.decode(errors='replace').strip()[:200]} — check 'path' and 'branch' in hearth.yaml."
            )
        return out

    def uri(self, rel: str) -> str:
        """How citations point at the file: ``base_url`` + path, else the path inside the source."""
        if self.options.base_url:
            return self.options.base_url.rstrip("/") + "/" + rel
        # Relative to the source's root: citations never show where the files live on the server.
        return rel

    async def _commit_times(self, commit: str, paths: set[str]) -> dict[str, datetime]:
        """Last commit time of each path (one walk over the log, stopping when all are found)."""
        out = await self._git("log", "--format=@@@%ct", "--name-only", "--no-renames", commit)
        times: dict[str, datetime] = {}
        current: datetime | None = None
        for line in out.decode("utf-8", errors="replace").splitlines():
            if line.startswith("@@@"):
                current = datetime.fromtimestamp(int(line[3:]), UTC)
            elif line and current is not None and line in paths and line not in times:
                times[line] = current
                if len(times) == len(paths):
                    break
        return times

    async def _blobs(self, shas: Sequence[str]) -> dict[str, bytes]:
        """Blob contents by sha, read with one ``git cat-file --batch``."""
        if not shas:
            return {}
        out = await self._git("cat-file", "--batch", stdin=("\n".join(shas) + "\n").encode())
        blobs: dict[str, bytes] = {}
        pos = 0
        while pos < len(out):
            end = out.index(b"\n", pos)
            header = out[pos:end].split()
            pos = end + 1
            if len(header) < 3:  # "<sha> missing"
                continue
            size = int(header[2])
            blobs[header[0].decode()] = out[pos : pos + size]
            pos += size + 1
        return blobs

    async def scan(self, ctx: ScanContext) -> AsyncIterator[Item]:
        """Changed files since the last synced commit are read; the rest are reported Unchanged."""
        if not (self.options.path / ".git").exists() and not (self.options.path / "HEAD").is_file():
            raise ConnectorError(
                f"Source '{self.source.name}': {self.options.path} is not a git repository — fix 'path'."
            )
        commit = (
            (await self._git("rev-parse", "--verify", f"{self.options.branch}^{{commit}}")).decode().strip()
        )
        listing = await self._git("ls-tree", "-r", "-z", "--long", commit)
        entries: list[tuple[str, str, int]] = []
        for record in listing.split(b"\0"):
            if not record:
                continue
            meta, _, path_b = record.partition(b"\t")
            mode_b, kind_b, sha_b, size_b = meta.split()
            rel = path_b.decode("utf-8", errors="replace")
            if (
                kind_b == b"blob"
                and mode_b != b"120000"
                and selected(rel, self.options.include, self.options.exclude)
            ):
                entries.append((rel, sha_b.decode(), int(size_b)))
        last = ctx.cursor.get("commit")
        previous = last if isinstance(last, str) else None
        changed: set[str] | None = None
        if previous and previous != commit:
            diff = await self._git("diff", "--name-only", "-z", "--no-renames", previous, commit, check=False)
            changed = {p.decode("utf-8", errors="replace") for p in diff.split(b"\0") if p} if diff else set()
        elif previous == commit:
            changed = set()
        to_read: list[tuple[str, str, int]] = []
        for rel, sha, size in entries:
            doc_id = f"{self.source.name}:{rel}"
            if changed is not None and rel not in changed and ctx.known.get(doc_id):
                yield Unchanged(doc_id)
            elif size > self.source.max_file_bytes:
                yield Skipped(
                    self.uri(rel),
                    f"larger than {self.source.max_file_bytes / 1_048_576:g} MB ({size / 1_048_576:.1f} MB)",
                )
            else:
                to_read.append((rel, sha, size))
        times = await self._commit_times(commit, {rel for rel, _, _ in to_read}) if to_read else {}
        for start in range(0, len(to_read), 200):
            batch = to_read[start : start + 200]
            blobs = await self._blobs([sha for _, sha, _ in batch])
            for rel, sha, _ in batch:
                try:
                    parsed = await asyncio.to_thread(parse, rel, blobs.get(sha, b""))
                except Unreadable as exc:
                    yield Skipped(self.uri(rel), str(exc))
                    continue
                updated = times.get(rel, datetime.now(UTC))
                yield parsed.document(
                    self.source, f"{self.source.name}:{rel}", self.uri(rel), updated, path=rel, commit=commit
                )
        ctx.cursor["commit"] = commit
