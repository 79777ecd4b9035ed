"""A reply that streams into Slack: a placeholder at once, throttled ``chat.update``s, split when long.

::

    reply = StreamingReply(client, channel, thread_ts=ts, interval_s=1.0)
    await reply.start()                      # chat.postMessage "Thinking…"
    async for event in assistant.ask_stream(request):
        if isinstance(event, Delta):
            await reply.feed(event.text)     # at most one chat.update per interval per message
    await reply.finish(answer)               # final text, sources, footer, 👍/👎

A long answer is several messages. ``on_change`` hears every message ts the reply uses whenever
that list changes (a message posted or deleted), so a process that takes the answer over after a
crash can ``adopt`` them all and write the answer into them again: each one updated in place, the
ones the new answer does not need deleted, never a second copy.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot import messages
from bot.slack import render
from bot.slack.errors import error_code
from core.contracts import Answer

log = logging.getLogger(__name__)


@dataclass
class _Posted:
    ts: str
    shown: str = ""
    updated_at: float = 0.0


@dataclass
class StreamingReply:
    """One answer's Slack messages, kept in step with the streamed text."""

    client: AsyncWebClient
    channel: str
    thread_ts: str | None = None
    interval_s: float = 1.0
    header: str | None = None
    header_fallback: str = ""
    limit: int = render.MESSAGE_CHARS
    clock: Callable[[], float] = time.monotonic
    posted: list[_Posted] = field(default_factory=list)
    # Told the ts of every message in use whenever that list changes (the answerer notes them with its claim).
    on_change: Callable[[list[str]], Awaitable[None]] | None = None
    # Slack message metadata on every message (which question they answer: finds one posted, not noted).
    metadata: dict[str, object] | None = None
    _text: str = ""

    async def _changed(self) -> None:
        if self.on_change is not None:
            await self.on_change([p.ts for p in self.posted])

    async def _post(self, text: str, blocks: list[render.Block]) -> str:
        resp = await self.client.chat_postMessage(
            channel=self.channel,
            thread_ts=self.thread_ts,
            text=text or messages.THINKING,  # Slack wants a non-empty fallback text
            blocks=blocks,
            unfurl_links=False,
            unfurl_media=False,
            metadata=self.metadata,
        )
        # Later messages go to the same thread; in a DM without a thread they follow each other.
        return str(resp["ts"])

    async def _update(self, msg: _Posted, text: str, blocks: list[render.Block], *, final: bool) -> None:
        wait = msg.updated_at + self.interval_s - self.clock()
        if wait > 0:
            if not final:
                return
            await asyncio.sleep(wait)  # Slack allows about one update per second per message
        try:
            await self.client.chat_update(
                channel=self.channel,
                ts=msg.ts,
                text=text or messages.THINKING,
                blocks=blocks,
                metadata=self.metadata,
            )
        except SlackApiError as exc:
            if error_code(exc) != "message_not_found":
                raise
            # Deleted meanwhile (by a person, or by a process that died before noting so): post it anew.
            log.info("slack: message %s is gone; posting its part of the answer again", msg.ts)
            msg.ts = await self._post(text, blocks)
            await self._changed()
        msg.updated_at = self.clock()
        msg.shown = text

    async def _drop(self, keep: int) -> None:
        """Delete the messages after the first ``keep`` (a shorter final text, or a notice)."""
        extra, self.posted[keep:] = self.posted[keep:], []
        if not extra:
            return
        for msg in extra:
            try:
                await self.client.chat_delete(channel=self.channel, ts=msg.ts)
            except SlackApiError as exc:
                if error_code(exc) != "message_not_found":
                    raise
        # Noted after the deletes: a crash in between leaves a ts that is gone, which _update reposts.
        await self._changed()

    async def start(self) -> str:
        """Post the placeholder; return its ts."""
        ts = await self._post(self._fallback(messages.THINKING, 0), render.streaming_blocks("", self.header))
        self.posted.append(_Posted(ts, messages.THINKING, self.clock()))
        await self._changed()
        return ts

    def adopt(self, ts: Sequence[str]) -> None:
        """Continue in the messages posted earlier, in order (by a process that died before it finished)."""
        self.posted.extend(_Posted(t, messages.THINKING, float("-inf")) for t in ts)

    def _fallback(self, text: str, index: int) -> str:
        return f"{self.header_fallback}\n\n{text}" if index == 0 and self.header_fallback else text

    async def feed(self, delta: str) -> None:
        """Add streamed text; refresh the messages when the throttle allows."""
        self._text += delta
        last = self.posted[-1] if self.posted else None
        due = last is None or self.clock() - last.updated_at >= self.interval_s
        # Rendering the whole text is only worth it when an update may go out or a message may overflow.
        if not due and len(self._text) < len(self.posted) * self.limit * 0.8:
            return
        if not self._text.strip():
            return  # nothing worth showing yet (the model opened with whitespace)
        parts = render.split_text(render.to_mrkdwn(self._text), self.limit)
        for i, part in enumerate(parts):
            header = self.header if i == 0 else None
            if i >= len(self.posted):
                ts = await self._post(part, render.streaming_blocks(part, header))
                self.posted.append(_Posted(ts, part, self.clock()))
                await self._changed()
            elif self.posted[i].shown != part:
                # A message that has filled up gets its full text as soon as its own throttle allows.
                await self._update(self.posted[i], part, render.streaming_blocks(part, header), final=False)

    async def finish(self, answer: Answer, extra: Sequence[render.Block] = ()) -> list[str]:
        """Show the finished answer; return the ts of every message it uses."""
        parts = render.answer_parts(answer, self.limit)
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            blocks = render.final_blocks(
                part, answer, header=self.header if i == 0 else None, last=last, extra=extra
            )
            text = self._fallback(answer_fallback(part), i)
            if i < len(self.posted):
                await self._update(self.posted[i], text, blocks, final=True)
            else:
                ts = await self._post(text, blocks)
                self.posted.append(_Posted(ts, text, self.clock()))
                await self._changed()
        await self._drop(len(parts))
        return [p.ts for p in self.posted]

    async def fail(self, text: str) -> None:
        """Replace the reply with a plain notice (an apology or a limit message)."""
        if not self.posted:
            await self._post(text, render.notice_blocks(render.escape(text)))
            return
        blocks = ([render.context([self.header])] if self.header else []) + render.notice_blocks(
            render.escape(text)
        )
        await self._update(self.posted[0], text, blocks, final=True)
        await self._drop(1)


def answer_fallback(part_mrkdwn: str) -> str:
    """The notification/fallback text of a message (Slack shows it where blocks cannot be shown)."""
    return part_mrkdwn[:3000]
