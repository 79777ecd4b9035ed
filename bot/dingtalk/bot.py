"""The DingTalk bot: one incoming message in, one answer out, through the shared core.

Both transports (Stream mode and HTTP callback) call :meth:`DingTalkBot.dispatch`, which returns
at once and answers in a background task the bot keeps track of (finished or cancelled on
:meth:`DingTalkBot.aclose`)::

    bot = DingTalkBot(settings, assistant, db=db, replier=replier)
    bot.dispatch(Incoming.from_payload(payload))
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from bot.dingtalk import commands
from bot.dingtalk.card import CardStream
from bot.dingtalk.commands import Kind
from bot.dingtalk.memory import ConversationMemory
from bot.dingtalk.message import Incoming
from bot.dingtalk.openapi import DingTalkAPIError, OpenAPI
from bot.dingtalk.render import answer_markdown, clip, table_markdown
from bot.dingtalk.reply import Replier
from bot.dingtalk.texts import Lang, pick_language, say
from bot.identity import acl_for
from core.assistant import Assistant
from core.config import Settings
from core.contracts import Answer, Delta, Request
from core.db import Database
from core.errors import BackendError, HearthError, InputError, TableError
from core.llm.base import Usage
from core.ratelimit import RateLimiter

log = logging.getLogger(__name__)

Events = AsyncIterator[Delta | Answer]


class DingTalkBot:
    """Translates DingTalk messages into core Requests and answers into DingTalk replies."""

    def __init__(
        self,
        settings: Settings,
        assistant: Assistant | Callable[[], Assistant | None],
        *,
        db: Database,
        replier: Replier,
        api: OpenAPI | None = None,
        memory: ConversationMemory | None = None,
        clock: Callable[[], float] = time.monotonic,
        thinking_after_s: float = 3.0,
        digests: Callable[[], Any | None] | None = None,
    ) -> None:
        self.settings = settings
        self.config = settings.dingtalk
        self._assistant = assistant
        self.db = db
        self.replier = replier
        self.api = api
        self.memory = memory or ConversationMemory()
        self.limiter = RateLimiter(self.config.rate_limit_per_minute, clock=clock)
        self.clock = clock
        self.thinking_after_s = thinking_after_s
        self._digests = digests  # the digest service of `hearth serve` (None while disabled)
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def assistant(self) -> Assistant | None:
        """The engine (None while `hearth serve` is still building it)."""
        return self._assistant if isinstance(self._assistant, Assistant) else self._assistant()

    # --- lifecycle ------------------------------------------------------------------------
    def dispatch(self, incoming: Incoming) -> asyncio.Task[None]:
        """Answer ``incoming`` in the background; the transport acknowledges DingTalk meanwhile."""
        task = asyncio.create_task(self.handle(incoming), name=f"dingtalk-{incoming.msg_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    @property
    def pending(self) -> int:
        """Answers still in progress."""
        return len(self._tasks)

    async def aclose(self, grace_s: float = 20.0) -> None:
        """Let answers in progress finish for up to ``grace_s`` seconds, then cancel the rest."""
        if not self._tasks:
            return
        _, late = await asyncio.wait(set(self._tasks), timeout=grace_s)
        for task in late:
            task.cancel()
        if late:
            log.warning("DingTalk: cancelled %d answer(s) still running at shutdown", len(late))
            await asyncio.gather(*late, return_exceptions=True)

    # --- one message ----------------------------------------------------------------------
    async def handle(self, incoming: Incoming) -> None:
        """Answer one message; never raises (failures are logged and apologised for)."""
        try:
            await self._handle(incoming)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("DingTalk message %s could not be handled", incoming.msg_id)
            lang = pick_language(self.config.language, incoming.text or "")
            try:
                await self._say(incoming, lang, say("GENERIC_ERROR", lang))
            except Exception:  # noqa: BLE001 — the reply path itself is broken; the log has it
                log.exception("DingTalk apology for message %s could not be sent", incoming.msg_id)

    async def _handle(self, incoming: Incoming) -> None:
        if not await self.db.first_time("dingtalk", incoming.msg_id):
            log.info("DingTalk message %s was already handled; ignoring the duplicate", incoming.msg_id)
            return
        lang = pick_language(self.config.language, incoming.text or "")
        if incoming.text is None:
            await self._say(incoming, lang, say("DINGTALK_NOT_TEXT", lang))
            return
        command = commands.parse(incoming.text)
        if incoming.is_group and not command.explicit and not incoming.in_at_list:
            return  # a group message not addressed to the robot
        log.info(
            "DingTalk %s from %s in %s (%s chat): %d chars",
            command.kind.value,
            incoming.staff_id,
            incoming.conversation_id,
            "group" if incoming.is_group else "1:1",
            len(command.text),
        )
        if command.kind is Kind.HELP:
            await self._say(incoming, lang, say("DINGTALK_HELP", lang))
            return
        if command.kind is Kind.DIGEST:
            await self._digest(incoming, lang, command.text)
            return
        if not command.text:
            key = "DINGTALK_EXPLAIN_EMPTY" if command.kind is Kind.EXPLAIN else "EMPTY_QUESTION"
            await self._say(incoming, lang, say(key, lang))
            return
        limit = self.config.max_question_chars
        if len(command.text) > limit:
            await self._say(
                incoming, lang, say("QUESTION_TOO_LONG", lang, length=len(command.text), limit=limit)
            )
            return
        wait = self.limiter.check(incoming.staff_id)
        if wait > 0:
            await self._say(incoming, lang, say("RATE_LIMITED", lang, seconds=max(1.0, wait)))
            return
        assistant = self.assistant
        if assistant is None:
            log.warning("DingTalk message %s arrived before the engine was ready", incoming.msg_id)
            await self._say(incoming, lang, say("MODEL_DOWN", lang))
            return
        request = self.request_for(incoming, command.text)
        events = self._events(assistant, command, request)
        if events is None:
            await self._say(incoming, lang, say("DINGTALK_TABLES_UNAVAILABLE", lang))
            return
        answer = await self._answer(incoming, events, lang)
        if answer is not None and command.kind is Kind.ASK:
            self.memory.remember(incoming.conversation_id, command.text, answer.text)

    def request_for(self, incoming: Incoming, text: str) -> Request:
        """The core Request for ``text``: the sender's ACL in this conversation and its memory."""
        acl = acl_for(
            "dingtalk",
            incoming.staff_id,
            channel=incoming.conversation_id,
            default=self.config.default_acl,
            users=self.config.users,
            channels_map=self.config.conversations,
        )
        return Request(
            text=text,
            user=incoming.staff_id,
            surface="dingtalk",
            acl=acl,
            channel=incoming.conversation_id,
            thread=incoming.msg_id,
            history=self.memory.history(incoming.conversation_id),
        )

    @staticmethod
    def _events(assistant: Assistant, command: commands.Command, request: Request) -> Events | None:
        """The core use case for ``command`` (None: table questions are not configured)."""
        if command.kind is Kind.EXPLAIN:
            code, language = commands.code_and_language(command.text)
            return assistant.complete_stream("explain", request, code=code, language=language)
        if command.kind is Kind.DATA:
            tables = getattr(assistant, "tables", None)
            return None if tables is None else _table_events(tables, request)
        return assistant.ask_stream(request)

    async def _answer(self, incoming: Incoming, events: Events, lang: Lang) -> Answer | None:
        """Stream ``events`` into a card when one is configured, else reply once with the final Markdown."""
        card = await self._start_card(incoming)
        thinking = None
        if card is None and self.thinking_after_s >= 0:
            thinking = asyncio.create_task(self._thinking(incoming, lang))
        answer: Answer | None = None
        parts: list[str] = []
        try:
            async for event in events:
                if isinstance(event, Answer):
                    answer = event
                elif card is not None:
                    parts.append(event.text)
                    await _quietly(card.update("".join(parts)))
            assert answer is not None, "the use case ended without an Answer"
            text, failed = answer_markdown(answer, lang), False
        except BackendError as exc:
            log.warning("DingTalk message %s: no model could answer: %s", incoming.msg_id, exc)
            text, failed = say("MODEL_DOWN", lang), True
        except (InputError, TableError) as exc:
            # Both are sentences written for the asker (an empty question, SQL the guard refused…).
            log.info("DingTalk message %s refused: %s", incoming.msg_id, exc)
            text, failed = str(exc), True
        except HearthError as exc:
            log.error("DingTalk message %s failed: %s", incoming.msg_id, exc)
            text, failed = say("GENERIC_ERROR", lang), True
        except Exception:
            log.exception("DingTalk message %s failed", incoming.msg_id)
            text, failed = say("GENERIC_ERROR", lang), True
        finally:
            if thinking is not None:
                thinking.cancel()
        if card is not None and await _quietly(card.finish(text, failed=failed)):
            return None if failed else answer
        await self._say(incoming, lang, text)
        return None if failed else answer

    async def _start_card(self, incoming: Incoming) -> CardStream | None:
        """An AI card for this answer when one is configured and DingTalk accepts it."""
        if self.api is None or not self.config.card_template_id:
            return None
        card = CardStream(self.api, incoming, self.config.card_template_id, clock=self.clock)
        if await _quietly(card.start()):
            return card
        return None

    async def _digest(self, incoming: Incoming, lang: Lang, text: str) -> None:
        """Run a `/digest …` command through the digest service."""
        service = self._digests() if self._digests is not None else None
        if service is None:
            await self._say(incoming, lang, say("DINGTALK_DIGESTS_UNAVAILABLE", lang))
            return
        from core.digests.commands import handle_command

        # A DingTalk owner must be a webhook name, not a person: let `owner=` be explicit (no default).
        reply = await handle_command(service, text, incoming.staff_id, surface=None)
        await self._say(incoming, lang, reply)

    async def _thinking(self, incoming: Incoming, lang: Lang) -> None:
        """Say "thinking" when an answer takes longer than ``thinking_after_s``."""
        await asyncio.sleep(self.thinking_after_s)
        await self._say(incoming, lang, say("THINKING", lang))

    async def _say(self, incoming: Incoming, lang: Lang, text: str) -> None:
        """Reply with Markdown ``text``."""
        await self.replier.markdown(incoming, say("DINGTALK_REPLY_TITLE", lang), text)


async def _quietly(call: Any) -> bool:
    """Await a DingTalk API call; log and return False when DingTalk refuses it."""
    try:
        await call
        return True
    except DingTalkAPIError as exc:
        log.warning("DingTalk card call failed: %s", exc)
        return False


async def _table_events(tables: Any, request: Request) -> Events:
    """Ask the table capability (``assistant.tables``: ``TableService.ask``) and render its result."""
    result = await tables.ask(request.text, acl=request.acl, priority=request.priority)
    columns, rows = list(result.columns or []), list(result.rows or [])
    # The SQL is shown below in a code block, so drop the answer's own "SQL: …" line.
    lines = str(result.answer or "").splitlines()
    sentence = "\n".join(line for line in lines if not line.startswith("SQL:"))
    parts = [sentence.strip()]
    if columns:
        parts.append(table_markdown(columns, rows))
    if result.sql:
        parts.append(f"```sql\n{clip(str(result.sql), 1500)}\n```")
    yield Answer(
        "\n\n".join(p for p in parts if p),
        [],
        result.backend,
        result.model,
        Usage(),
        notices=list(result.notices),
        request_id=request.request_id,
    )
