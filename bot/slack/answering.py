"""One question from Slack, answered: de-duplicate, check limits, map identity, stream, record."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot import messages
from bot.slack import render
from bot.slack.access import SlackAccess
from bot.slack.feedback import AnswerRecord, FeedbackStore
from bot.slack.history import thread_history
from bot.slack.inbound import code_snippet
from bot.slack.stream import StreamingReply
from core import metrics
from core.assistant import Assistant
from core.config import SlackSettings
from core.contracts import Answer, Delta, Request
from core.db import Database
from core.errors import BackendError, HearthError, InputError, TableError
from core.llm.base import Usage
from core.ratelimit import RateLimiter

log = logging.getLogger(__name__)

Kind = Literal["ask", "data", "explain"]
Notify = Callable[[str], Awaitable[None]]
# Slack reports these when the bot cannot post where it was asked.
_CANNOT_POST = {"not_in_channel", "channel_not_found", "is_archived", "restricted_action"}


@dataclass
class Question:
    """A question as it arrived from Slack, before any checks."""

    kind: Kind
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


@dataclass
class Produced:
    """What the final message shows: the Answer, extra blocks (SQL, table) and files to attach."""

    answer: Answer
    extra: list[dict[str, Any]] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)


class Answerer:
    """Runs the whole answer for one :class:`Question` (called from bolt's lazy listeners)."""

    def __init__(
        self,
        settings: SlackSettings,
        assistant: Assistant | Callable[[], Assistant | None],
        db: Database,
        client: AsyncWebClient,
        *,
        access: SlackAccess,
        limiter: RateLimiter,
        feedback: FeedbackStore,
    ) -> None:
        self.settings = settings
        # `hearth serve` may still be starting the engine when Slack calls; then answers apologise.
        self._assistant = assistant
        self.db = db
        self.client = client
        self.access = access
        self.limiter = limiter
        self.feedback = feedback

    @property
    def assistant(self) -> Assistant | None:
        """The engine, or None while `hearth serve` has not managed to start it."""
        return self._assistant if isinstance(self._assistant, Assistant) else self._assistant()

    async def handle(self, q: Question, *, bot_user_id: str | None = None, bot_id: str | None = None) -> None:
        """Answer ``q`` once, whatever Slack retries; never raises, never shows a traceback."""
        try:
            if not await self.db.first_time("slack", q.question_id):
                log.info("slack: %s already answered (a retry or a duplicate); skipping", q.question_id)
                return
            notice = self._refusal(q)
            if notice is not None:
                await q.notify(notice)
                return
            await self._answer(q, bot_user_id, bot_id)
        except SlackApiError as exc:
            log.error(
                "slack: Web API call failed while answering %s: %s", q.question_id, exc.response.get("error")
            )
        except Exception:
            log.exception("slack: unexpected failure answering %s", q.question_id)
            metrics.ERRORS.labels("unexpected", "slack").inc()

    def _refusal(self, q: Question) -> str | None:
        """A notice when the question is empty, too long or over the asker's rate; None to go ahead."""
        if not q.text.strip():
            return messages.SLACK_EXPLAIN_EMPTY if q.kind == "explain" else messages.EMPTY_QUESTION
        limit = self.settings.max_question_chars
        if len(q.text) > limit:
            return messages.QUESTION_TOO_LONG.format(length=len(q.text), limit=limit)
        wait = self.limiter.check(q.user)
        if wait > 0:
            return messages.RATE_LIMITED.format(seconds=max(1.0, wait))
        if self.assistant is None:
            return messages.MODEL_DOWN
        if q.kind == "data" and getattr(self.assistant, "tables", None) is None:
            return messages.SLACK_TABLES_UNAVAILABLE
        return None

    async def _answer(self, q: Question, bot_user_id: str | None, bot_id: str | None) -> None:
        assistant = self.assistant
        assert assistant is not None
        acl = await self.access.acl(q.user, q.channel)
        history = []
        if q.history_thread and q.message_ts:
            budget = min(self.settings.history_max_chars, assistant.limits.prompt_budget_chars // 3)
            history = await thread_history(
                self.client,
                q.channel,
                q.history_thread,
                before_ts=q.message_ts,
                bot_user_id=bot_user_id,
                bot_id=bot_id,
                budget_chars=budget,
            )
        request = Request(
            text=q.text,
            user=q.user,
            surface="slack",
            acl=acl,
            channel=q.channel,
            thread=q.reply_thread,
            history=history,
        )
        reply = StreamingReply(
            self.client,
            q.channel,
            thread_ts=q.reply_thread,
            interval_s=self.settings.update_interval_s,
            header=q.header,
            header_fallback=q.header_fallback,
        )
        try:
            await reply.start()
        except SlackApiError as exc:
            if exc.response.get("error") in _CANNOT_POST:
                await q.notify(messages.SLACK_NOT_IN_CHANNEL)
                return
            raise
        try:
            produced = await self._produce(assistant, q, request, reply)
        except InputError as exc:
            await reply.fail(str(exc))
            return
        except BackendError as exc:
            log.warning("slack: no model could answer %s: %s", q.question_id, exc)
            metrics.ERRORS.labels("backend", "slack").inc()
            await reply.fail(messages.MODEL_DOWN)
            return
        except TableError as exc:
            await reply.fail(messages.SLACK_TABLE_ERROR.format(reason=str(exc)))
            return
        except HearthError as exc:
            log.warning("slack: could not answer %s: %s", q.question_id, exc)
            await reply.fail(messages.GENERIC_ERROR)
            return
        except SlackApiError:
            raise
        except Exception:
            log.exception("slack: answering %s failed", q.question_id)
            metrics.ERRORS.labels("unexpected", "slack").inc()
            await reply.fail(messages.GENERIC_ERROR)
            return
        answer = produced.answer
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
        await reply.finish(answer, produced.extra)
        if produced.files:
            await self._attach(q.channel, q.reply_thread or reply.posted[0].ts, produced.files)

    async def _produce(
        self, assistant: Assistant, q: Question, request: Request, reply: StreamingReply
    ) -> Produced:
        """Run the use case, feeding streamed text to ``reply``; return what the final message shows."""
        if q.kind == "data":
            return await self._table_answer(assistant, request)
        answer: Answer | None = None
        async for event in self._stream(assistant, q, request):
            if isinstance(event, Delta):
                await reply.feed(event.text)
            else:
                answer = event
        if answer is None:
            raise HearthError("the answer stream ended without an answer")
        return Produced(answer)

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
            log.warning("slack: attaching %d file(s) failed: %s", len(uploads), exc.response.get("error"))

    @staticmethod
    def _stream(assistant: Assistant, q: Question, request: Request) -> AsyncIterator[Delta | Answer]:
        if q.kind == "explain":
            code, language = code_snippet(q.text)
            return assistant.complete_stream("explain", request, code=code, language=language)
        return assistant.ask_stream(request)

    @staticmethod
    async def _table_answer(assistant: Assistant, request: Request) -> Produced:
        """Ask the tables capability and render its answer, SQL and rows; its chart and CSV go as files."""
        tables = getattr(assistant, "tables", None)
        assert tables is not None
        started = time.perf_counter()
        result = await tables.ask(request.text, acl=request.acl, priority=request.priority)
        get = _getter(result)
        sql = str(get("sql") or "")
        text = str(get("answer") or "")
        if sql and text.rstrip().endswith(f"SQL: {sql}"):
            text = text.rstrip()[: -len(f"SQL: {sql}")].rstrip()  # shown below as a code block instead
        extra: list[dict[str, Any]] = []
        if sql:
            extra.append(render.section(f"*{messages.SLACK_SQL}:*\n```\n{render.escape(sql)[:2800]}\n```"))
        table = get("table")
        columns, rows = get("columns"), get("rows")
        if table:
            extra.append(render.section(("```\n" + render.escape(str(table)))[:2990] + "\n```"))
        elif columns and rows is not None:
            extra.append(render.section(render.text_table(list(columns), list(rows))[:3000]))
        files = [Path(p) for p in (get("chart"), get("csv")) if p]
        notices = [str(n) for n in get("notices") or []]
        for path in files:  # the files are attached, so name them rather than a path on the server
            notices = [n.replace(str(path), path.name) for n in notices]
        answer = Answer(
            text=text,
            citations=[],
            backend=str(get("backend") or "local"),
            model=str(get("model") or ""),
            usage=get("usage") or Usage(),
            timings_ms={"total": (time.perf_counter() - started) * 1000},
            notices=notices,
            request_id=request.request_id,
        )
        return Produced(answer, extra, files)


def _getter(result: Any) -> Callable[[str], Any]:
    """Read a field from a result that may be a mapping or an object."""
    if isinstance(result, Mapping):
        return result.get
    return lambda name: getattr(result, name, None)
