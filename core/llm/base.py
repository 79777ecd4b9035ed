"""The one interface every language-model backend implements, and the values that cross it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from typing import Protocol, runtime_checkable


class Role(StrEnum):
    """Who said a message."""

    SYSTEM = "system"
    USER = "user"
    ASSISTANT = "assistant"


@dataclass(frozen=True)
class Message:
    """One chat message."""

    role: Role
    content: str


class Priority(IntEnum):
    """Queue priority for the local model: lower runs first."""

    EDITOR = 0
    CHAT = 1
    DIGEST = 2


@dataclass
class GenOptions:
    """Sampling and length options for one generation."""

    max_tokens: int = 256
    temperature: float = 0.2
    top_p: float = 0.95
    stop: list[str] = field(default_factory=list)
    # Extra stops for a base model fed a completion prompt: it has no end-of-turn of its own.
    completion_stop: list[str] = field(default_factory=list)
    repeat_penalty: float = 1.1
    seed: int | None = None
    priority: Priority = Priority.CHAT
    # Text to start the answer with; for base (completion) models it primes the continuation.
    answer_prefix: str = ""
    # A verbatim prompt (code completion): each str is tokenized as plain text, never into control
    # tokens; each int is a token id (BOS, fill-in-the-middle markers). When set it replaces the
    # messages, and the router skips backends without ``raw_prompts`` (a chat API cannot take it).
    prompt_parts: list[str | int] | None = None


@dataclass
class Usage:
    """Token counts for one generation."""

    prompt_tokens: int = 0
    completion_tokens: int = 0

    def as_dict(self) -> dict[str, int]:
        """Return the JSON form used by every surface."""
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens}


@dataclass
class Chunk:
    """A piece of streamed output; the last one has ``done=True`` and carries usage and model."""

    text: str = ""
    done: bool = False
    usage: Usage | None = None
    model: str | None = None
    finish_reason: str | None = None
    backend: str | None = None  # set by the router: "local" | "remote"


@runtime_checkable
class LLMBackend(Protocol):
    """A model that streams text.

    Implementations yield zero or more text chunks then exactly one ``done`` chunk::

        async for chunk in backend.stream([Message(Role.USER, "hi")], GenOptions()):
            print(chunk.text, end="")
    """

    name: str

    @property
    def model(self) -> str:
        """The model identifier reported in answers."""
        ...

    def stream(self, messages: Sequence[Message], options: GenOptions) -> AsyncIterator[Chunk]:
        """Stream the completion of ``messages``."""
        ...

    async def aclose(self) -> None:
        """Release the backend's resources."""
        ...


async def collect(stream: AsyncIterator[Chunk]) -> tuple[str, Chunk]:
    """Drain a stream; return the full text and the final chunk."""
    parts: list[str] = []
    final = Chunk(done=True, usage=Usage())
    async for chunk in stream:
        if chunk.done:
            final = chunk
        if chunk.text:
            parts.append(chunk.text)
    return "".join(parts), final
