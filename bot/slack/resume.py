"""Finish the answers a dead process left behind: its "Thinking…" placeholder becomes the answer.

When the process answering a question dies (deploy, OOM, an engine crash), its claim stays
unfinished and its messages stay in the thread: the placeholder, and for a long answer every
message it had been split over. Every answer notes its messages and question with its claim
(``Database.note``), updated whenever it posts or deletes one, so whoever takes the claim over
continues in those same messages: Slack's retry of the event, or — for slash commands, which Slack
never retries, and for events whose retries are spent — this sweep, run at startup and then once
per claim lease::

    resumer = Resumer(db, answerer, client, engine_ready=lambda: intake.engine is not None)
    task = asyncio.create_task(resumer.run(every_s=20))

Exactly once: taking a claim over has one winner (``Database.claim``), and the answer is written
into the messages left (``chat.update``; the ones it no longer needs deleted), never as a new copy,
so even a resumer that dies in turn leaves one answer in the thread. A question that has already
killed ``MAX_ATTEMPTS`` processes, or that is older than ``max_age_s``, is not answered again: its
first message says so, in one sentence. The note is written before the first message is posted, so
a process that died between posting a message and noting it still leaves a note: the message it
names none of is found by the question in its metadata (``Answerer.left_behind``) and adopted.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot import messages
from bot.resume import MAX_AGE_S, MAX_ATTEMPTS, sweep_forever
from bot.slack.answering import Answerer, Question
from bot.slack.errors import error_code
from core.db import Database

log = logging.getLogger(__name__)


class Resumer:
    """Takes over unfinished Slack claims whose holder died, and finishes them in their placeholder."""

    def __init__(
        self,
        db: Database,
        answerer: Answerer,
        client: AsyncWebClient,
        *,
        engine_ready: Callable[[], bool],
        max_age_s: float = MAX_AGE_S,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.db = db
        self.answerer = answerer
        self.client = client
        self.engine_ready = engine_ready
        self.max_age_s = max_age_s
        self.wall = wall
        self._identity: tuple[str | None, str | None] | None = None
        self.swept = asyncio.Event()  # set after each sweep of :meth:`run` (tests wait on it)

    async def run(self, every_s: float) -> None:
        """Sweep once the engine is ready, then every ``every_s`` seconds (a lease that ran out elsewhere)."""
        await sweep_forever(self.sweep, ready=self.engine_ready, every_s=every_s, swept=self.swept)

    async def sweep(self) -> int:
        """Finish every unfinished answer that can be taken over now; return how many were."""
        done = 0
        for left in await self.db.unfinished("slack"):
            try:
                q, _ = Question.resumed(left.note, self.client)
            except (ValueError, KeyError, TypeError):
                log.error("slack: the note of %s cannot be read; its answer is not resumed", left.event_id)
                continue
            if left.attempts >= MAX_ATTEMPTS or self.wall() - left.claimed_at > self.max_age_s:
                done += await self._give_up(q, left.attempts)
                continue
            log.warning(
                "slack: %s was left unanswered by a process that stopped; answering it in its placeholder",
                q.question_id,
            )
            bot_user_id, bot_id = await self._bot_identity()
            await self.answerer.handle(q, bot_user_id=bot_user_id, bot_id=bot_id)  # claims it (one winner)
            done += 1
        return done

    async def _give_up(self, q: Question, attempts: int) -> int:
        """Say in the first message that the answer was lost (the others deleted); finish the claim."""
        if not await self.db.claim("slack", q.question_id):
            return 0  # someone else took it meanwhile
        posted = await self.answerer.left_behind(q)  # noted, and posted but not noted
        log.error(
            "slack: giving up on %s after %d attempt(s); its placeholder says to ask again",
            q.question_id,
            attempts,
        )
        try:
            await self.answerer.reply_for(q, posted).fail(messages.ANSWER_LOST)
        except SlackApiError as exc:
            log.warning("slack: could not update the placeholder of %s (%s)", q.question_id, error_code(exc))
        await self.db.finish("slack", q.question_id)
        return 1

    async def _bot_identity(self) -> tuple[str | None, str | None]:
        """The bot's user id and bot id (``auth.test``, once), to tell its own turns in thread history."""
        if self._identity is None:
            try:
                resp = await self.client.auth_test()
                self._identity = (resp.get("user_id"), resp.get("bot_id"))
            except SlackApiError as exc:
                log.warning(
                    "slack: auth.test failed (%s); history tells the bot apart by bot_id", error_code(exc)
                )
                return None, None
        return self._identity
