"""The DingTalk bot: one incoming message in, one answer out, through the shared core.

Both transports (Stream mode and HTTP callback) call :meth:`DingTalkBot.dispatch`, which returns
at once and answers in a background task the bot keeps track of (finished or cancelled on
:meth:`DingTalkBot.aclose`)::

    bot = DingTalkBot(settings, intake, db=db, replier=replier)     # intake: core.intake.Intake
    bot.dispatch(Incoming.from_payload(payload))
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict
from typing import TYPE_CHECKING

from bot.dingtalk import commands
from bot.dingtalk.card import CardStream, card_id_for
from bot.dingtalk.commands import Kind
from bot.dingtalk.memory import ConversationMemory
from bot.dingtalk.message import Incoming
from bot.dingtalk.openapi import DingTalkAPIError, OpenAPI
from bot.dingtalk.render import answer_markdown
from bot.dingtalk.reply import Replier
from bot.dingtalk.texts import Lang, pick_language, refusal_text, say
from bot.identity import acl_for, audience_of
from bot.resume import MAX_AGE_S, MAX_ATTEMPTS, sweep_forever
from core.config import Settings
from core.contracts import Answer, Delta, Request
from core.db import Database
from core.intake import Ask, Code, Intake
from core.intake import Kind as AskKind
from core.refusals import Reason, Refusal

if TYPE_CHECKING:
    from core.digests.service import DigestService

log = logging.getLogger(__name__)

Events = AsyncIterator[Delta | Answer | Refusal]
_KINDS = {Kind.ASK: AskKind.ASK, Kind.DATA: AskKind.TABLES, Kind.EXPLAIN: AskKind.EXPLAIN}


class DingTalkBot:
    """Translates DingTalk messages into core Requests and answers into DingTalk replies."""

    def __init__(
        self,
        settings: Settings,
        intake: Intake,
        *,
        db: Database,
        replier: Replier,
        api: OpenAPI | None = None,
        memory: ConversationMemory | None = None,
        clock: Callable[[], float] = time.monotonic,
        thinking_after_s: float = 3.0,
        digests: Callable[[], DigestService | None] | None = None,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.config = settings.dingtalk
        self.intake = intake
        self.db = db
        self.replier = replier
        self.api = api
        self.memory = memory or ConversationMemory()
        self.clock = clock
        self.thinking_after_s = thinking_after_s
        self._digests = digests  # the digest service of `hearth serve` (None while disabled)
        self._tasks: set[asyncio.Task[None]] = set()
        self.wall = wall
        self._resuming: asyncio.Task[None] | None = None
        self.swept = asyncio.Event()  # set after each resume sweep (tests wait on it)

    # --- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        """Answer what a dead process left unanswered: once the engine is ready, then once per lease."""
        every = max(1.0, self.intake.claim_lease_s / 3)
        self._resuming = asyncio.create_task(
            sweep_forever(
                self.resume, ready=lambda: self.intake.engine is not None, every_s=every, swept=self.swept
            ),
            name="dingtalk-resume",
        )

    async def resume(self) -> int:
        """Answer each message whose claim a dead process left unfinished (DingTalk does not redeliver).

        The claim has one winner, so an answer is not given twice while its process lives. An AI card
        the dead process had opened is noted with the claim and finished with the answer (or, when
        the message is given up, with the sentence that it was lost), so it never stays "processing"
        and the answer is not posted a second time beside it. Without a card, a process that dies after
        replying but before finishing the claim is the one case that answers twice. A message that
        has taken down ``MAX_ATTEMPTS`` processes, or is older than ``MAX_AGE_S``, gets one sentence
        saying the answer was lost.
        """
        done = 0
        for left in await self.db.unfinished("dingtalk"):
            try:
                incoming, card = read_note(left.note)
            except (ValueError, TypeError, KeyError):
                log.error("DingTalk: the note of message %s cannot be read; not answered", left.event_id)
                continue
            if left.attempts >= MAX_ATTEMPTS or self.wall() - left.claimed_at > MAX_AGE_S:
                if await self.db.claim("dingtalk", incoming.msg_id):
                    log.error(
                        "DingTalk: giving up on message %s after %d attempt(s)",
                        incoming.msg_id,
                        left.attempts,
                    )
                    await self._lost(incoming, card)
                    await self.db.finish("dingtalk", incoming.msg_id)
                    done += 1
                continue
            log.warning(
                "DingTalk: message %s was left unanswered by a process that stopped; answering it%s",
                left.event_id,
                " in its card" if card else "",
            )
            await self.handle(incoming, card=card)  # claims it (one winner) and answers
            done += 1
        return done

    async def _lost(self, incoming: Incoming, card: str | None) -> None:
        """Say that the answer to ``incoming`` was lost: in its card when it has one, else as a reply."""
        lang = pick_language(self.config.language, incoming.text or "")
        text = say("ANSWER_LOST", lang)
        stream = self._card(incoming, card) if card else None
        if stream is not None and await _quietly(stream.finish(text, failed=True)):
            return
        try:
            await self._say(incoming, lang, text)
        except Exception:  # noqa: BLE001 — the reply path is broken; the log has it
            log.exception("DingTalk: could not say that message %s was lost", incoming.msg_id)

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
        if self._resuming is not None:
            self._resuming.cancel()
            await asyncio.gather(self._resuming, return_exceptions=True)
        if not self._tasks:
            return
        _, late = await asyncio.wait(set(self._tasks), timeout=grace_s)
        for task in late:
            task.cancel()
        if late:
            log.warning("DingTalk: cancelled %d answer(s) still running at shutdown", len(late))
            await asyncio.gather(*late, return_exceptions=True)

    # --- one message ----------------------------------------------------------------------
    async def handle(self, incoming: Incoming, *, card: str | None = None) -> None:
        """Answer one message (``card``: the AI card a dead process opened for it); never raises."""
        try:
            await self._handle(incoming, card)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("DingTalk message %s could not be handled", incoming.msg_id)
            lang = pick_language(self.config.language, incoming.text or "")
            try:
                await self._say(incoming, lang, say("GENERIC_ERROR", lang))
            except Exception:  # noqa: BLE001 — the reply path itself is broken; the log has it
                log.exception("DingTalk apology for message %s could not be sent", incoming.msg_id)

    async def _handle(self, incoming: Incoming, card: str | None = None) -> None:
        lang = pick_language(self.config.language, incoming.text or "")
        if incoming.text is None:
            if await self.db.first_time("dingtalk", incoming.msg_id):
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
        if command.kind in (Kind.HELP, Kind.DIGEST):
            if not await self.db.first_time("dingtalk", incoming.msg_id):
                return
            if command.kind is Kind.HELP:
                await self._say(incoming, lang, say("DINGTALK_HELP", lang))
            else:
                await self._digest(incoming, lang, command.text)
            return
        ask = self.ask_for(incoming, command)
        async with self.intake.turn(ask) as refusal:
            if refusal is not None:
                if refusal.reason is not Reason.DUPLICATE:
                    await self._refuse(incoming, lang, refusal_text(refusal, lang), card)
                return
            # Claimed: if this process dies before it has answered, a restart answers from this note.
            await self.db.note("dingtalk", incoming.msg_id, note_for(incoming, card))
            answer = await self._answer(incoming, self.intake.answer(ask), lang, card)
            if answer is not None and answer.withheld and incoming.is_group:
                await self._offer_privately(incoming, lang, answer.withheld)
        if answer is not None and command.kind is Kind.ASK:
            self.memory.remember(incoming.conversation_id, command.text, answer.text)

    def ask_for(self, incoming: Incoming, command: commands.Command) -> Ask:
        """The core's view of one command from ``incoming``."""
        request = self.request_for(incoming, command.text)
        code = None
        if command.kind is Kind.EXPLAIN:
            code = Code(*commands.code_and_language(command.text))
        # In a group every member sees the reply: answer for the group's grants, not the sender's.
        audience = audience_of(
            incoming.conversation_id,
            private=not incoming.is_group,
            default=self.config.default_acl,
            channels_map=self.config.conversations,
        )
        return Ask(_KINDS[command.kind], request, code=code, once=incoming.msg_id, audience=audience)

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

    async def _refuse(self, incoming: Incoming, lang: Lang, text: str, card: str | None) -> None:
        """Say a refusal: in the card a dead process left (so it is not left "processing"), else as a reply."""
        stream = self._card(incoming, card) if card else None
        if stream is None or not await _quietly(stream.finish(text, failed=True)):
            await self._say(incoming, lang, text)

    async def _answer(
        self, incoming: Incoming, events: Events, lang: Lang, left: str | None = None
    ) -> Answer | None:
        """Stream ``events`` into a card when one is configured (``left``: the one a dead process
        opened), else reply once with the final Markdown."""
        card = self._card(incoming, left) if left else await self._start_card(incoming)
        thinking = None
        if card is None and self.thinking_after_s >= 0:
            thinking = asyncio.create_task(self._thinking(incoming, lang))
        answer: Answer | None = None
        parts: list[str] = []
        text, failed = "", True
        try:
            async for event in events:
                if isinstance(event, Answer):
                    answer = event
                    text, failed = answer_markdown(answer, lang), False
                elif isinstance(event, Refusal):
                    text = refusal_text(event, lang)
                elif card is not None:
                    parts.append(event.text)
                    await _quietly(card.update("".join(parts)))
        finally:
            if thinking is not None:
                thinking.cancel()
        if card is not None and await _quietly(card.finish(text, failed=failed)):
            return None if failed else answer
        await self._say(incoming, lang, text)
        return None if failed else answer

    async def _offer_privately(self, incoming: Incoming, lang: Lang, count: int) -> None:
        """Tell the asker alone, 1:1 as the robot, that their own grants would find more (never the group)."""
        if self.api is None:
            log.info(
                "DingTalk: %d document(s) only %s may read were left out of a group answer; no 1:1 offer "
                "without dingtalk.client_id/client_secret",
                count,
                incoming.staff_id,
            )
            return
        text = say("DINGTALK_WITHHELD", lang, count=count)
        if not await _quietly(
            self.api.send_private_markdown(incoming, say("DINGTALK_REPLY_TITLE", lang), text)
        ):
            log.warning("DingTalk: the 1:1 offer to %s was not delivered", incoming.staff_id)

    async def _start_card(self, incoming: Incoming) -> CardStream | None:
        """An AI card for this answer when one is configured and DingTalk accepts it."""
        if self.api is None or not self.config.card_template_id:
            return None
        track = card_id_for(incoming.msg_id)
        # Noted before DingTalk creates it, so a restart finishes this card instead of leaving it
        # "processing", even when this process dies right after creating it. A restart whose card was
        # never created finds it missing and replies instead (DingTalk: "card not found").
        await self.db.note("dingtalk", incoming.msg_id, note_for(incoming, track))
        card = CardStream(
            self.api, incoming, self.config.card_template_id, clock=self.clock, out_track_id=track
        )
        if await _quietly(card.start()):
            return card
        return None

    def _card(self, incoming: Incoming, out_track_id: str) -> CardStream | None:
        """The card ``out_track_id`` that was delivered for ``incoming`` earlier (None: no OpenAPI client)."""
        if self.api is None:
            log.warning(
                "DingTalk: card %s cannot be finished without dingtalk.client_id/secret", out_track_id
            )
            return None
        template = self.config.card_template_id or ""
        return CardStream(self.api, incoming, template, clock=self.clock, out_track_id=out_track_id)

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


def note_for(incoming: Incoming, card: str | None) -> str:
    """What a restart needs to answer ``incoming``: the message, and the AI card opened for it (if any)."""
    return json.dumps({"incoming": asdict(incoming), "card": card})


def read_note(note: str) -> tuple[Incoming, str | None]:
    """The message and card of a :func:`note_for` (a note from before cards were noted: the message alone)."""
    data = json.loads(note)
    if "incoming" not in data:
        return Incoming(**data), None
    card = data.get("card")
    return Incoming(**data["incoming"]), str(card) if card else None


async def _quietly(call: Awaitable[object]) -> bool:
    """Await a DingTalk API call; log and return False when DingTalk refuses it."""
    try:
        await call
        return True
    except DingTalkAPIError as exc:
        log.warning("DingTalk call failed: %s", exc)
        return False
