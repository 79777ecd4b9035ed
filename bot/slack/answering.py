"""One question from Slack, answered: map identity and thread history, hand it to the core's intake, stream it."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot import messages
from bot.slack import render
from bot.slack.access import SlackAccess
from bot.slack.errors import error_code
from bot.slack.feedback import AnswerRecord, FeedbackStore
from bot.slack.history import thread_history
from bot.slack.inbound import code_snippet
from bot.slack.stream import StreamingReply
from bot.slack.threads import AnsweredThreads
from core.config import SlackSettings
from core.contracts import Answer, Delta, Request
from core.db import Database
from core.intake import Ask, Code, Intake, Kind
from core.refusals import Reason, Refusal

log = logging.getLogger(__name__)

Command = Literal["ask", "data", "explain"]
_KINDS = {"ask": Kind.ASK, "data": Kind.TABLES, "explain": Kind.EXPLAIN}
Notify = Callable[[str], Awaitable[None]]
# Slack reports these when the bot cannot post where it was asked.
_CANNOT_POST = {"not_in_channel", "channel_not_found", "is_archived", "restricted_action"}
# The metadata event type on every message of an answer; its payload names the question.
ANSWER_EVENT = "hearth_answer"
# How far before ``asked_at`` a lookup for a slash command's unnoted placeholder starts: Slack's
# clock and this host's may disagree a little (the message is told apart by its metadata anyway).
CLOCK_SKEW_S = 120.0
# Pages of conversations.replies / history read when looking for messages posted but not noted.
_LOOKUP_PAGES = 2
_LOOKUP_LIMIT = 200


@dataclass
class Question:
    """A question as it arrived from Slack, before any checks."""

    kind: Command
    user: str
    channel: str
    text: str
    question_id: str  # event_id for events, trigger_id for slash commands
    notify: Notify  # shows a short notice only to the asker (ephemeral, or in the DM)
    reply_thread: str | None = None  # where the answer goes (None: a new top-level message)
    history_thread: str | None = None  # the thread whose earlier messages are history
    message_ts: str | None = None  # the question's own message (history stops before it)
    header: str | None = None  # shown above the answer (slash commands are not echoed by Slack)
    header_fallback: str = ""
    private_via: Literal["ephemeral", "dm"] = "ephemeral"  # how ``notify`` reaches the asker
    # When Hearth received it (this host's clock): where a slash command's messages, which have no
    # question message to follow, are looked for after a crash.
    asked_at: float = field(default_factory=time.time)

    def note(self, posted: Sequence[str]) -> str:
        """What another process needs to finish this answer in the messages ``posted`` so far, in order
        (JSON, kept with the claim; ``posted`` is empty in the note written before the first message)."""
        fields = {k: v for k, v in asdict(self).items() if k != "notify"}
        # "placeholder" (the first message) is what notes held before long answers noted every message.
        first = posted[0] if posted else None
        return json.dumps({"placeholder": first, "messages": list(posted), "question": fields})

    @classmethod
    def resumed(cls, note: str, client: AsyncWebClient) -> tuple[Question, list[str]]:
        """The question and message ts of a :meth:`note`; ``notify`` goes through the Web API."""
        data = json.loads(note)
        fields = dict(data["question"])
        notify = private_notice(
            client, fields["channel"], fields["user"], fields["reply_thread"], via=fields["private_via"]
        )
        kept = data["messages"] if "messages" in data else [data["placeholder"]]
        return cls(notify=notify, **fields), [str(ts) for ts in kept]

    def lookup_from(self) -> str:
        """The ts after which this answer's messages are (the question's own message, or ``asked_at``)."""
        return self.message_ts or f"{self.asked_at - CLOCK_SKEW_S:.6f}"


def private_notice(
    client: AsyncWebClient, channel: str, user: str, thread: str | None, *, via: str = "ephemeral"
) -> Notify:
    """Show a notice to ``user`` only: ephemeral in the channel (or its thread), or in the DM."""
    if via == "dm":

        async def in_dm(notice: str) -> None:
            await client.chat_postMessage(channel=channel, text=notice, thread_ts=thread)

        return in_dm

    async def ephemeral(notice: str) -> None:
        await client.chat_postEphemeral(channel=channel, user=user, text=notice, thread_ts=thread)

    return ephemeral


@dataclass
class Produced:
    """What the final message shows: the Answer, extra blocks (SQL, table) and files to attach."""

    answer: Answer
    extra: list[render.Block] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)


class Answerer:
    """Runs the whole answer for one :class:`Question` (called from bolt's lazy listeners)."""

    def __init__(
        self,
        settings: SlackSettings,
        intake: Intake,
        client: AsyncWebClient,
        *,
        access: SlackAccess,
        feedback: FeedbackStore,
        db: Database | None = None,
        threads: AnsweredThreads | None = None,
    ) -> None:
        self.settings = settings
        self.intake = intake
        self.client = client
        self.access = access
        self.feedback = feedback
        self.db = db  # where the placeholder of each answer in progress is noted, to resume it
        self.threads = threads  # where answers went, so replies there are follow-ups
        # Refusals that show a command name the one this workspace uses (slack.commands).
        self.refusals = messages.slack_refusals(settings.commands.ask, settings.commands.explain)

    async def handle(self, q: Question, *, bot_user_id: str | None = None, bot_id: str | None = None) -> None:
        """Answer ``q`` once, whatever Slack retries; never raises, never shows a traceback."""
        try:
            ask = self._ask(q, await self.access.acl(q.user, q.channel), self.access.audience(q.channel))
            async with self.intake.turn(ask) as refusal:
                if refusal is not None and refusal.reason is Reason.DUPLICATE:
                    return
                # The claim is ours. A process that died on this question left its messages: use them.
                left = await self.left_behind(q)
                if refusal is not None:
                    if not left:
                        await q.notify(refusal.text(self.refusals))
                    else:
                        await self.reply_for(q, left).fail(refusal.text(self.refusals))
                    return
                if q.history_thread and q.message_ts and self.intake.engine is not None:
                    budget = min(
                        self.settings.history_max_chars, self.intake.engine.limits.prompt_budget_chars // 3
                    )
                    ask.request.history = await thread_history(
                        self.client,
                        q.channel,
                        q.history_thread,
                        before_ts=q.message_ts,
                        bot_user_id=bot_user_id,
                        bot_id=bot_id,
                        budget_chars=budget,
                    )
                await self._answer(q, ask, left)  # the claim is finished once this has posted it
        except SlackApiError as exc:
            log.error("slack: Web API call failed while answering %s: %s", q.question_id, error_code(exc))
        except Exception:
            log.exception("slack: unexpected failure answering %s", q.question_id)

    @staticmethod
    def _ask(q: Question, acl: frozenset[str], audience: frozenset[str] | None) -> Ask:
        """The core's view of ``q`` (``audience``: who else sees the answer in the channel)."""
        request = Request(
            text=q.text, user=q.user, surface="slack", acl=acl, channel=q.channel, thread=q.reply_thread
        )
        code = None
        if q.kind == "explain":
            snippet, language = code_snippet(q.text)
            code = Code(snippet, language)
        return Ask(_KINDS[q.kind], request, code=code, once=q.question_id, audience=audience)

    async def left_behind(self, q: Question) -> list[str]:
        """The messages a dead process posted for ``q`` before it finished, in order ([]: none).

        Those its note names, then those it posted but died before noting: the note is written
        before the first message is posted and after each one, so a process that dies in between
        leaves one message no note names. Every message carries the question in its metadata, so it
        is found after the last one noted or, when none was, after the question itself.
        """
        if self.db is None:
            return []
        note = await self.db.noted("slack", q.question_id)
        if note is None:
            return []  # no one got as far as posting: the note comes first
        asked, posted = Question.resumed(note, self.client)
        return posted + await self._strays(q, after=posted[-1] if posted else asked.lookup_from())

    async def _strays(self, q: Question, *, after: str) -> list[str]:
        """Messages of ``q``'s answer posted after ``after`` that no note names (a page or two looked at)."""
        found: list[str] = []
        cursor: str | None = None
        try:
            for _ in range(_LOOKUP_PAGES):
                if q.reply_thread:
                    resp = await self.client.conversations_replies(
                        channel=q.channel,
                        ts=q.reply_thread,
                        oldest=after,
                        include_all_metadata=True,
                        limit=_LOOKUP_LIMIT,
                        cursor=cursor,
                    )
                else:
                    resp = await self.client.conversations_history(
                        channel=q.channel,
                        oldest=after,
                        include_all_metadata=True,
                        limit=_LOOKUP_LIMIT,
                        cursor=cursor,
                    )
                found += [str(m["ts"]) for m in resp.get("messages") or [] if answers_question(m, q, after)]
                cursor = (resp.get("response_metadata") or {}).get("next_cursor")
                if not resp.get("has_more") or not cursor:
                    break
        except SlackApiError as exc:
            log.info("slack: could not look for unnoted messages of %s (%s)", q.question_id, error_code(exc))
        if found:
            log.warning(
                "slack: %d message(s) of %s were posted but not noted; reusing them",
                len(found),
                q.question_id,
            )
        return sorted(set(found), key=float)

    def reply_for(self, q: Question, left: Sequence[str] = ()) -> StreamingReply:
        """The streaming reply for ``q``: a new placeholder, or the messages ``left`` by an earlier process.

        Every message it posts or deletes is noted with the claim, so a process that takes the answer
        over writes it into the same messages.
        """
        db = self.db

        async def noted(posted: list[str]) -> None:
            if db is not None and posted:
                await db.note("slack", q.question_id, q.note(posted))

        reply = StreamingReply(
            self.client,
            q.channel,
            thread_ts=q.reply_thread,
            interval_s=self.settings.update_interval_s,
            header=q.header,
            header_fallback=q.header_fallback,
            on_change=noted,
            metadata={"event_type": ANSWER_EVENT, "event_payload": {"question_id": q.question_id}},
        )
        reply.adopt(left)
        return reply

    async def _answer(self, q: Question, ask: Ask, left: Sequence[str] = ()) -> None:
        reply = self.reply_for(q, left)
        events = self.intake.answer(ask)
        if not left:
            if self.db is not None:  # before posting: whoever takes over looks for what it posted
                await self.db.note("slack", q.question_id, q.note([]))
            try:
                await reply.start()  # noted with the claim, so a restart finishes the answer in it
            except SlackApiError as exc:
                await events.aclose()
                if error_code(exc) in _CANNOT_POST:
                    await q.notify(messages.SLACK_NOT_IN_CHANNEL)
                    return
                raise
        answer: Answer | None = None
        async for event in events:
            if isinstance(event, Delta):
                await reply.feed(event.text)
            elif isinstance(event, Refusal):
                await reply.fail(event.text(self.refusals))
                return
            else:
                answer = event
        assert answer is not None, "the intake ends with an Answer or a Refusal"
        # Stored before the buttons appear, so even the quickest 👍 finds its answer.
        await self.feedback.record_answer(
            AnswerRecord(
                answer_id=answer.request_id,
                question_id=q.question_id,
                user_id=q.user,
                channel=q.channel,
                message_ts=reply.posted[0].ts,
                kind=q.kind,
                question=q.text,
                answer=answer.text,
                model=answer.model,
                backend=answer.backend,
            )
        )
        produced = _produced(answer)
        await reply.finish(answer, produced.extra)
        if self.threads is not None and not q.channel.startswith("D"):
            await self.threads.remember(q.channel, q.reply_thread or reply.posted[0].ts)
        if answer.withheld:  # only the asker hears that more exists; never its text, never in the channel
            await q.notify(messages.SLACK_WITHHELD.format(count=answer.withheld))
        if produced.files:
            await self._attach(q.channel, q.reply_thread or reply.posted[0].ts, produced.files)

    async def _attach(self, channel: str, thread_ts: str, files: list[Path]) -> None:
        """Upload a table answer's chart/CSV into the answer's thread (a failure only loses the files)."""
        uploads = []
        for path in files:
            try:
                content = await asyncio.to_thread(path.read_bytes)
            except OSError as exc:
                log.warning("slack: cannot read %s to attach it: %s", path, exc)
                continue
            uploads.append({"content": content, "filename": path.name, "title": path.name})
        if not uploads:
            return
        try:
            await self.client.files_upload_v2(channel=channel, thread_ts=thread_ts, file_uploads=uploads)
        except SlackApiError as exc:
            log.warning("slack: attaching %d file(s) failed: %s", len(uploads), error_code(exc))


def answers_question(msg: dict[str, object], q: Question, after: str) -> bool:
    """Whether ``msg`` is a message of ``q``'s answer posted after ``after`` (by its metadata)."""
    meta = msg.get("metadata")
    payload = meta.get("event_payload") if isinstance(meta, dict) else None
    return (
        isinstance(meta, dict)
        and meta.get("event_type") == ANSWER_EVENT
        and isinstance(payload, dict)
        and payload.get("question_id") == q.question_id
        and float(str(msg.get("ts", 0))) > float(after)
    )


def _produced(answer: Answer) -> Produced:
    """What the final message shows: a table answer's SQL and rows as blocks, its chart and CSV as files."""
    part = answer.table
    if part is None:
        return Produced(answer)
    extra = [
        render.section(f"*{messages.SLACK_SQL}:*\n```\n{render.escape(part.sql)[:2800]}\n```"),
        render.section(render.text_table(part.columns, part.rows, max_rows=part.chat_rows)),
    ]
    files = [p for p in (part.chart, part.csv) if p is not None]
    notices = list(answer.notices)
    for path in files:  # the files are attached, so name them rather than a path on the server
        notices = [n.replace(str(path), path.name) for n in notices]
    answer.notices = notices
    return Produced(answer, extra, files)
