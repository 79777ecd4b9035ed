"""Proactive posts (digests, notifications) through signed custom-robot webhooks.

A custom robot takes at most 20 messages a minute. The poster keeps a queue per robot: while
the robot has room each post goes out on its own; when only one slot is left, everything queued
is merged into one message; when DingTalk still answers errcode 130101 (rate limited) the poster
backs off and retries. Nothing queued is dropped::

    poster = DingTalkPoster(settings.dingtalk)
    await poster.post("team", "## Weekly digest\\n…")   # "team" is a key of dingtalk.webhooks
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import aiohttp

from bot.dingtalk.openapi import DingTalkAPIError
from bot.dingtalk.render import clip
from bot.dingtalk.signing import signed_webhook_url
from core.config import DingTalkSettings
from core.errors import ConfigError

log = logging.getLogger(__name__)

RATE_LIMITED = 130101
WINDOW_S = 60.0
SEPARATOR = "\n\n---\n\n"
MAX_MESSAGE_CHARS = 5000


class _Retry(Exception):
    """A failure worth retrying later (rate limit, network, 5xx)."""

    def __init__(self, message: str, *, rate_limited: bool = False) -> None:
        super().__init__(message)
        self.rate_limited = rate_limited


@dataclass
class _Pending:
    text: str
    future: asyncio.Future[str]


@dataclass
class _Robot:
    name: str
    url: str
    secret: str | None
    pending: deque[_Pending] = field(default_factory=deque)
    sent: deque[float] = field(default_factory=deque)
    worker: asyncio.Task[None] | None = None


class DingTalkPoster:
    """A :class:`core.contracts.Poster` for DingTalk; ``destination`` is a key of ``dingtalk.webhooks``."""

    surface = "dingtalk"

    def __init__(
        self,
        settings: DingTalkSettings,
        *,
        session: aiohttp.ClientSession | None = None,
        per_minute: int = 20,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        wall: Callable[[], float] = time.time,
        retry_base_s: float = 5.0,
        retry_max_s: float = 300.0,
        max_network_attempts: int = 5,
    ) -> None:
        self._robots = {
            name: _Robot(name, hook.url, hook.secret.get_secret_value() if hook.secret else None)
            for name, hook in settings.webhooks.items()
        }
        self._session = session
        self._owns_session = session is None
        self.timeout = aiohttp.ClientTimeout(total=settings.request_timeout_s)
        self.per_minute = per_minute
        self.clock = clock
        self.sleep = sleep
        self.wall = wall
        self.retry_base_s = retry_base_s
        self.retry_max_s = retry_max_s
        self.max_network_attempts = max_network_attempts

    async def post(self, destination: str, markdown: str) -> str:
        """Queue ``markdown`` for webhook ``destination``; return '' (no id) once DingTalk accepted it."""
        robot = self._robots.get(destination)
        if robot is None:
            known = ", ".join(sorted(self._robots)) or "(none configured)"
            raise ConfigError(f"Unknown DingTalk webhook '{destination}'; available: {known}")
        if not markdown.strip():
            raise ConfigError("Refusing to post an empty message to DingTalk.")
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[str]] = []
        for part in split_markdown(markdown, MAX_MESSAGE_CHARS):
            futures.append(loop.create_future())
            robot.pending.append(_Pending(part, futures[-1]))
        if robot.worker is None or robot.worker.done():
            robot.worker = asyncio.create_task(self._drain(robot), name=f"dingtalk-webhook-{robot.name}")
        # The message stays queued even if the caller stops waiting.
        results = await asyncio.shield(asyncio.gather(*futures))
        return results[0]

    def queued(self, destination: str) -> int:
        """Messages waiting for ``destination``."""
        return len(self._robots[destination].pending)

    async def _drain(self, robot: _Robot) -> None:
        """Send everything queued for ``robot``, honouring its rate limit."""
        backoff = self.retry_base_s
        network_failures = 0
        while robot.pending:
            room = self._room(robot)
            if room <= 0:
                await self.sleep(max(0.01, robot.sent[0] + WINDOW_S - self.clock()))
                continue
            batch = self._take(robot, merge=room == 1 or backoff > self.retry_base_s)
            text = SEPARATOR.join(p.text for p in batch)
            try:
                await self._send(robot, text)
            except _Retry as exc:
                robot.pending.extendleft(reversed(batch))
                if not exc.rate_limited:
                    network_failures += 1
                    if network_failures >= self.max_network_attempts:
                        self._fail(robot, DingTalkAPIError(f"DingTalk webhook '{robot.name}' failed: {exc}"))
                        return
                log.warning(
                    "DingTalk webhook '%s': %s; retrying in %.0fs with %d message(s) queued",
                    robot.name,
                    exc,
                    backoff,
                    len(robot.pending),
                )
                await self.sleep(backoff)
                backoff = min(backoff * 2, self.retry_max_s)
                continue
            except DingTalkAPIError as exc:
                log.error("DingTalk webhook '%s' refused a message: %s", robot.name, exc)
                for p in batch:
                    if not p.future.done():
                        p.future.set_exception(exc)
                continue
            backoff = self.retry_base_s
            network_failures = 0
            robot.sent.append(self.clock())
            if len(batch) > 1:
                log.info(
                    "DingTalk webhook '%s': merged %d queued messages into one post", robot.name, len(batch)
                )
            for p in batch:
                if not p.future.done():
                    p.future.set_result("")

    def _room(self, robot: _Robot) -> int:
        """Posts the robot may still make in the current minute."""
        now = self.clock()
        while robot.sent and robot.sent[0] <= now - WINDOW_S:
            robot.sent.popleft()
        return self.per_minute - len(robot.sent)

    @staticmethod
    def _take(robot: _Robot, *, merge: bool) -> list[_Pending]:
        """The next message, or (``merge``) as many queued messages as fit in one post."""
        batch = [robot.pending.popleft()]
        size = len(batch[0].text)
        while (
            merge
            and robot.pending
            and size + len(SEPARATOR) + len(robot.pending[0].text) <= MAX_MESSAGE_CHARS
        ):
            item = robot.pending.popleft()
            size += len(SEPARATOR) + len(item.text)
            batch.append(item)
        return batch

    async def _send(self, robot: _Robot, text: str) -> None:
        """One signed webhook call; raise _Retry for rate limits and transient failures."""
        if self._session is None:
            self._session = aiohttp.ClientSession()
        url = signed_webhook_url(robot.url, robot.secret, int(self.wall() * 1000))
        body = {"msgtype": "markdown", "markdown": {"title": _title(text), "text": text}}
        try:
            async with self._session.post(url, json=body, timeout=self.timeout) as resp:
                raw = await resp.text()
                status = resp.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _Retry(f"could not reach DingTalk ({exc!r})") from exc
        if status >= 500 or status == 429:
            raise _Retry(f"DingTalk answered HTTP {status}")
        try:
            data = json.loads(raw)
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise DingTalkAPIError(
                f"DingTalk webhook '{robot.name}' answered HTTP {status} with {raw[:200]!r}", status
            )
        code = data.get("errcode", 0)
        if code == RATE_LIMITED:
            raise _Retry("rate limited by DingTalk (errcode 130101)", rate_limited=True)
        if code != 0:
            raise DingTalkAPIError(
                f"DingTalk webhook '{robot.name}' refused the message: errcode {code} "
                f"({data.get('errmsg', '')}) — check dingtalk.webhooks.{robot.name}.url and .secret",
                code,
            )

    def _fail(self, robot: _Robot, exc: Exception) -> None:
        """Fail every queued message of ``robot`` with ``exc``."""
        log.error("%s; %d message(s) not delivered", exc, len(robot.pending))
        while robot.pending:
            item = robot.pending.popleft()
            if not item.future.done():
                item.future.set_exception(exc)

    async def aclose(self, grace_s: float = 10.0) -> None:
        """Give queued messages ``grace_s`` seconds to go out, then stop and close the HTTP session."""
        workers = [r.worker for r in self._robots.values() if r.worker is not None and not r.worker.done()]
        if workers:
            _, late = await asyncio.wait(workers, timeout=grace_s)
            for task in late:
                task.cancel()
            for robot in self._robots.values():
                if robot.pending:
                    log.error(
                        "DingTalk webhook '%s': %d queued message(s) dropped at shutdown",
                        robot.name,
                        len(robot.pending),
                    )
                    for item in robot.pending:
                        item.future.cancel()
                    robot.pending.clear()
            await asyncio.gather(*late, return_exceptions=True)
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None


def split_markdown(text: str, limit: int) -> list[str]:
    """``text`` in pieces of at most ``limit`` characters, cut at paragraph, then line, boundaries."""
    pieces: list[str] = []
    rest = text.strip()
    while len(rest) > limit:
        cut = rest.rfind("\n\n", 0, limit)
        if cut < limit // 2:
            cut = rest.rfind("\n", 0, limit)
        if cut < limit // 2:
            cut = limit
        pieces.append(rest[:cut].rstrip())
        rest = rest[cut:].strip()
    pieces.append(rest)
    return [p for p in pieces if p]


_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")  # [label](url) and ![alt](url) -> the label
_MARKERS = re.compile(r"\*\*|__|~~|`+|<[^>]+>")  # bold, strike-through, code spans, HTML tags
_LEAD = re.compile(r"^(?:[#>*+-]+|\d+[.)])\s*")  # headings, quotes, list bullets and numbers


def _title(text: str) -> str:
    """The notification title DingTalk shows as plain text: the first line without Markdown markers.

    DingTalk shows the title verbatim (in the chat list and notifications), so ``**weekly** · …``
    would show its asterisks.
    """
    first = next((line for line in text.splitlines() if line.strip()), "")
    plain = _MARKERS.sub("", _LINK.sub(r"\1", first)).strip()
    while (stripped := _LEAD.sub("", plain).strip()) != plain:
        plain = stripped
    return clip(" ".join(plain.split()) or "Hearth", 40)
