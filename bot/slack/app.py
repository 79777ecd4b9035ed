"""The Slack bot: a slack-bolt ``AsyncApp`` whose listeners acknowledge at once and answer lazily.

::

    bot = SlackBot(settings, intake, db)                      # intake: core.intake.Intake
    response = await bot.app.async_dispatch(bolt_request)   # HTTP (bot.slack.http) or Socket Mode
    await bot.aclose()                                      # waits for answers still streaming

Every listener is ``ack`` + ``lazy=[...]``: bolt returns the acknowledgement before any model work
starts, so Slack's 3-second rule holds however busy the model is.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Literal

from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncBoltContext, AsyncRespond
from slack_bolt.lazy_listener.async_internals import to_runnable_function
from slack_bolt.lazy_listener.async_runner import AsyncLazyListenerRunner
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
)
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient

from bot import messages
from bot.slack import render
from bot.slack.access import SlackAccess
from bot.slack.answering import Answerer, Command, Notify, Question, private_notice
from bot.slack.errors import error_code
from bot.slack.feedback import FeedbackStore, slack_answers, slack_feedback
from bot.slack.inbound import Payload, field, member, plain_text
from bot.slack.resume import Resumer
from bot.slack.threads import AnsweredThreads, slack_threads
from core.config import Settings, SlackSettings
from core.db import Database, seen_events
from core.errors import ConfigError
from core.intake import Intake

if TYPE_CHECKING:  # the digest service is imported only when `hearth serve` runs one
    from core.digests.service import DigestService

log = logging.getLogger(__name__)

_FEEDBACK = re.compile(rf"^{render.FEEDBACK_ACTION}_(up|down)$")


class TrackingLazyRunner(AsyncLazyListenerRunner):
    """Runs bolt's lazy listeners as tasks it keeps, so shutdown can wait for answers in flight."""

    def __init__(self, logger: logging.Logger) -> None:
        self.logger = logger
        self.tasks: set[asyncio.Task[None]] = set()

    def start(self, function: Callable[..., Awaitable[None]], request: AsyncBoltRequest) -> None:
        """Start ``function`` for ``request`` in the background."""
        task = asyncio.ensure_future(
            to_runnable_function(internal_func=function, logger=self.logger, request=request)
        )
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)


def make_client(settings: SlackSettings) -> AsyncWebClient:
    """The Web API client: ``slack.api_base_url``, retries after 429 (Retry-After) and connection resets."""
    base = settings.api_base_url if settings.api_base_url.endswith("/") else settings.api_base_url + "/"
    token = settings.bot_token.get_secret_value() if settings.bot_token else None
    return AsyncWebClient(
        token=token,
        base_url=base,
        timeout=30,
        retry_handlers=[
            AsyncConnectionErrorRetryHandler(max_retry_count=2),
            AsyncRateLimitErrorRetryHandler(max_retry_count=3),
        ],
    )


def check_settings(settings: SlackSettings) -> None:
    """Fail at startup, naming the key, when a token the chosen mode needs is missing."""
    if settings.bot_token is None:
        raise ConfigError(
            "slack.bot_token is not set — paste the bot token (xoxb-…) from the Slack app's OAuth page."
        )
    if settings.mode == "http" and settings.signing_secret is None:
        raise ConfigError(
            "slack.signing_secret is not set — copy it from the Slack app's Basic Information page."
        )
    if settings.mode == "socket" and settings.app_token is None:
        raise ConfigError("slack.app_token is not set — Socket Mode needs an app-level token (xapp-…).")


class SlackBot:
    """The bolt app plus what its listeners share: client, identity, limits, feedback, tasks."""

    def __init__(
        self,
        settings: Settings,
        intake: Intake,
        db: Database,
        *,
        client: AsyncWebClient | None = None,
        clock: Callable[[], float] = time.monotonic,
        digests: Callable[[], DigestService | None] | None = None,
    ) -> None:
        s = settings.slack
        check_settings(s)
        self.settings = s
        self.intake = intake
        self.db = db
        self.client = client or make_client(s)
        # The digest service (`/digest …`), when `hearth serve` runs one; looked up per command.
        self.digests = digests or (lambda: None)
        secret = s.signing_secret.get_secret_value() if s.signing_secret else ""
        # Socket Mode has no signing secret (requests arrive over the authenticated WebSocket).
        self.verifier = SignatureVerifier(secret or "unused-in-socket-mode")
        self.app = AsyncApp(
            name="hearth",
            client=self.client,
            signing_secret=secret or None,
            request_verification_enabled=s.mode == "http",
            raise_error_for_unhandled_request=False,
        )
        self.runner = TrackingLazyRunner(logging.getLogger("slack_bolt.lazy"))
        # bolt offers no constructor argument for this; the attribute is its documented runner slot.
        self.app.listener_runner.lazy_listener_runner = self.runner
        self.feedback = FeedbackStore(db)
        self.threads = AnsweredThreads(db)
        names = s.commands
        # The slash commands by their configured names (renamed to avoid a clash with another app).
        self.commands: dict[str, Command] = {names.ask: "ask", names.data: "data", names.explain: "explain"}
        self.answerer = Answerer(
            s,
            intake,
            self.client,
            access=SlackAccess(s, self.client, clock=clock),
            feedback=self.feedback,
            db=db,
            threads=self.threads,
        )
        self.resumer = Resumer(db, self.answerer, self.client, engine_ready=lambda: intake.engine is not None)
        self._resuming: asyncio.Task[None] | None = None
        self._register()

    # --- listeners: translate a Slack payload into a Question, nothing more ----------------------

    def _register(self) -> None:
        app = self.app
        names = self.settings.commands
        asks = "|".join(re.escape(name) for name in self.commands)
        app.command(re.compile(rf"^({asks})$"))(ack=self._ack, lazy=[self._command])
        app.command(names.help)(self._hearth)
        app.command(names.digest)(ack=self._ack, lazy=[self._digest])
        app.event("app_mention")(ack=self._ack, lazy=[self._mention])
        app.event("message")(ack=self._ack, lazy=[self._plain_message])
        app.action(_FEEDBACK)(ack=self._ack, lazy=[self._vote])

    @staticmethod
    async def _ack(ack: AsyncAck) -> None:
        await ack()

    async def _hearth(self, ack: AsyncAck, command: Payload) -> None:
        """``/hearth help``: answered in the acknowledgement itself (no model work)."""
        arg = field(command, "text").strip().lower()
        names = self.settings.commands
        text = (
            messages.SLACK_HELP.format(**names.model_dump())
            if arg in ("", "help")
            else messages.SLACK_UNKNOWN_COMMAND.format(
                command=render.escape(f"{names.help} {arg}"), help=names.help
            )
        )
        await ack(text=text, blocks=render.notice_blocks(text), response_type="ephemeral")

    async def _digest(self, command: Payload, respond: AsyncRespond) -> None:
        """``/digest list|run|create|delete …``: handled by the digest service, answered privately."""
        service = self.digests()
        if service is None:
            await respond(text=messages.SLACK_DIGESTS_UNAVAILABLE, response_type="ephemeral")
            return
        from core.digests.commands import handle_command

        try:
            reply = await handle_command(
                service, plain_text(field(command, "text")), str(command["user_id"]), surface="slack"
            )
        except Exception:
            log.exception("slack: /digest failed")
            reply = messages.GENERIC_ERROR
        await respond(text=render.escape(reply), response_type="ephemeral")

    async def _command(self, command: Payload, respond: AsyncRespond, context: AsyncBoltContext) -> None:
        kind = self.commands[str(command["command"])]
        text = plain_text(field(command, "text"))

        async def notify(notice: str) -> None:
            await respond(text=notice, response_type="ephemeral", replace_original=False)

        user = str(command["user_id"])
        shown = render.escape(text if len(text) <= 300 else text[:300] + "…")
        header = messages.SLACK_ASKED.format(user=user, question=f"`{command['command']}` {shown}")
        question = Question(
            kind=kind,
            user=user,
            channel=str(command["channel_id"]),
            text=text,
            question_id=f"command:{field(command, 'trigger_id') or uuid.uuid4().hex}",
            notify=notify,
            header=header,
            header_fallback=header,
        )
        await self.answerer.handle(question, bot_user_id=context.bot_user_id, bot_id=context.bot_id)

    async def _mention(self, event: Payload, body: Payload, context: AsyncBoltContext) -> None:
        """@Hearth in a channel: answer in the thread (the mention's own thread, or a new one)."""
        if not field(event, "user") or event.get("bot_id"):
            return
        thread = field(event, "thread_ts") or None
        reply_thread = thread or str(event["ts"])
        notify = private_notice(self.client, str(event["channel"]), field(event, "user"), reply_thread)
        await self._message(event, body, context, notify, reply_thread=reply_thread, history_thread=thread)

    async def _plain_message(self, event: Payload, body: Payload, context: AsyncBoltContext) -> None:
        """A message without @Hearth: a DM to the bot, or a reply in a channel thread Hearth answered in.

        Every other message event (the bot's own, edits, joins, channel chatter) is acknowledged and ignored.
        """
        user = field(event, "user")
        if not user or event.get("bot_id") or user == context.bot_user_id:
            return
        channel = str(event["channel"])
        thread = field(event, "thread_ts") or None
        if event.get("channel_type") == "im":
            if event.get("subtype"):
                return
            notify = private_notice(self.client, channel, user, thread, via="dm")
            await self._message(
                event, body, context, notify, reply_thread=thread, history_thread=thread, private_via="dm"
            )
            return
        if (
            not self.settings.thread_follow_ups
            or thread is None
            or thread == field(event, "ts")  # a thread's parent: not a reply
            or event.get("subtype") not in (None, "thread_broadcast")
            or (context.bot_user_id and f"<@{context.bot_user_id}" in field(event, "text"))  # app_mention's
        ):
            return
        if not await self.threads.answered(channel, thread):
            return  # a thread Hearth has no part in
        notify = private_notice(self.client, channel, user, thread)
        await self._message(event, body, context, notify, reply_thread=thread, history_thread=thread)

    async def _message(
        self,
        event: Payload,
        body: Payload,
        context: AsyncBoltContext,
        notify: Notify,
        *,
        reply_thread: str | None,
        history_thread: str | None,
        private_via: Literal["ephemeral", "dm"] = "ephemeral",
    ) -> None:
        """Answer a message event (a mention or a DM); its history stops before the message itself."""
        ts = str(event["ts"])
        question = Question(
            kind="ask",
            user=field(event, "user"),
            channel=str(event["channel"]),
            text=plain_text(field(event, "text"), context.bot_user_id),
            question_id=f"event:{field(body, 'event_id') or ts}",
            notify=notify,
            reply_thread=reply_thread,
            history_thread=history_thread,
            message_ts=ts,
            private_via=private_via,
        )
        await self.answerer.handle(question, bot_user_id=context.bot_user_id, bot_id=context.bot_id)

    async def _vote(self, body: Payload, action: Payload) -> None:
        """👍/👎 on an answer: store the vote, thank the person privately."""
        direction, _, answer_id = field(action, "value").partition(":")
        user = field(member(body, "user"), "id")
        if direction not in ("up", "down") or not answer_id or not user:
            log.warning("slack: ignoring a malformed feedback action")
            return
        question_id = await self.feedback.vote(answer_id, user, 1 if direction == "up" else -1)
        if question_id is None:
            log.warning("slack: feedback for unknown answer %s", answer_id)
            return
        channel = field(member(body, "channel"), "id")
        thread = field(member(body, "message"), "thread_ts") or None
        if channel:
            try:
                await self.client.chat_postEphemeral(
                    channel=channel, user=user, text=messages.SLACK_FEEDBACK_THANKS, thread_ts=thread
                )
            except SlackApiError as exc:
                log.info("slack: could not thank %s for feedback (%s)", user, error_code(exc))

    # --- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Create the bot's tables before the first event (concurrent first events must not race to it)."""
        await self.db.ensure([seen_events, slack_answers, slack_feedback, slack_threads])
        # Answers a dead process left unfinished: now (once the engine is up), then once per lease.
        every = max(1.0, self.intake.claim_lease_s / 3)
        self._resuming = asyncio.create_task(self.resumer.run(every), name="slack-resume")

    async def drain(self, timeout_s: float | None = None) -> None:
        """Wait for answers still being written (all of them, or until ``timeout_s``)."""
        pending = set(self.runner.tasks)
        if pending:
            await asyncio.wait(pending, timeout=timeout_s)

    async def aclose(self, timeout_s: float = 20.0) -> None:
        """Let in-flight answers finish (up to ``timeout_s``), then cancel the rest."""
        if self._resuming is not None:
            self._resuming.cancel()
            await asyncio.gather(self._resuming, return_exceptions=True)
        await self.drain(timeout_s)
        for task in list(self.runner.tasks):
            task.cancel()
        if self.runner.tasks:
            await asyncio.gather(*self.runner.tasks, return_exceptions=True)
