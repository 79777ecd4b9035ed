"""A scripted backend for tests: implements the Protocol and records every call."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field

from core.llm.base import Chunk, GenOptions, Message, Usage


@dataclass
class FakeCall:
    """One recorded call."""

    messages: list[Message]
    options: GenOptions


@dataclass
class FakeBackend:
    """Streams scripted replies word by word.

    ``reply`` is a fixed string or a function of the messages; ``error`` is raised before the
    first token, or after ``fail_after`` word chunks were streamed when that is set (a model that
    dies mid-answer); ``first_token_delay``/``token_delay`` simulate a slow model, and ``hold`` (an
    ``asyncio.Event``) keeps the first token back until the test sets it, so a test can check what
    happens while the model works without measuring time::

        backend = FakeBackend(reply="Paris is the capital.")
        dying = FakeBackend(reply="one two three", error=BackendUnavailable("gone"), fail_after=2)

    It models the ``LLMBackend`` Protocol (chunks, a final ``done`` chunk with usage, cancellation
    by closing the stream); it does not model tokenisation (a word is a token), context limits or
    sampling options, which it records but ignores.
    """

    reply: str | Callable[[Sequence[Message]], str] = "This is a fake answer."
    name: str = "fake"
    raw_prompts: bool = True  # accepts GenOptions.prompt_parts (recorded with the options)
    model_name: str = "fake-model"
    error: BaseException | None = None
    fail_after: int | None = None
    first_token_delay: float = 0.0
    token_delay: float = 0.0
    hold: asyncio.Event | None = None
    calls: list[FakeCall] = field(default_factory=list)
    cancelled: int = 0
    closed: bool = False

    @property
    def model(self) -> str:
        """The model identifier reported in answers."""
        return self.model_name

    async def stream(self, messages: Sequence[Message], options: GenOptions) -> AsyncIterator[Chunk]:
        """Yield the scripted reply in word-sized chunks."""
        self.calls.append(FakeCall(list(messages), options))
        if self.error is not None and self.fail_after is None:
            raise self.error
        text = self.reply(messages) if callable(self.reply) else self.reply
        words = text.split(" ")
        try:
            if self.hold is not None:
                await self.hold.wait()
            if self.first_token_delay:
                await asyncio.sleep(self.first_token_delay)
            for i, word in enumerate(words):
                if self.error is not None and i == self.fail_after:
                    raise self.error
                if i and self.token_delay:
                    await asyncio.sleep(self.token_delay)
                yield Chunk(text=word if i == 0 else " " + word)
            if self.error is not None:  # fail_after reached the end of the reply: fail before done
                raise self.error
        except (asyncio.CancelledError, GeneratorExit):
            # The asker went away (task cancelled or the stream closed early).
            self.cancelled += 1
            raise
        prompt_tokens = sum(len(m.content.split()) for m in messages)
        yield Chunk(
            done=True, usage=Usage(prompt_tokens, len(words)), model=self.model_name, finish_reason="stop"
        )

    async def aclose(self) -> None:
        """Mark the backend closed."""
        self.closed = True
