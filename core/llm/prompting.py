"""Prompt shaping shared by the local engines: plain prompts for base models, the context budget."""

from __future__ import annotations

from collections.abc import Sequence

from core.errors import InputError
from core.llm.base import Message, Role


def completion_prompt(messages: Sequence[Message], answer_prefix: str = "") -> str:
    """Flatten chat messages into a plain prompt for a base model without a chat template."""
    parts: list[str] = []
    for message in messages:
        if message.role is Role.ASSISTANT:
            parts.append(f"Answer: {message.content}")
        else:
            parts.append(message.content.strip())
    prompt = "\n\n".join(p for p in parts if p)
    return f"{prompt}\n\n{answer_prefix}" if answer_prefix else prompt + "\n\n"


def fit_max_tokens(prompt_tokens: int, wanted: int, n_ctx: int) -> int:
    """The answer length that fits beside the prompt; InputError when the prompt leaves no room."""
    room = n_ctx - prompt_tokens
    if room < 16:
        raise InputError(
            f"The prompt is {prompt_tokens} tokens, too long for the model's {n_ctx}-token context "
            "window — shorten the question or raise llm.local.n_ctx."
        )
    return min(wanted, room)
