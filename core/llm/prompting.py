"""Prompt shaping shared by the local engines: plain prompts for base models, chat-template
segments that keep message text from becoming control tokens, the context budget.

A chat template is rendered with a random mark in place of each message's text, and the result
is cut at the marks into :class:`Segment` s: the template's own markup (trusted: tokenized with
special-token parsing, so ``<|im_start|>`` there is the control token) and each message's text
(untrusted: tokenized as plain text, so ``<|im_start|>`` written in a retrieved document, a thread
or a table sample stays the characters ``<``, ``|``, ``im`` …)::

    marks = message_marks(len(messages))
    rendered = render_template([{"role": ..., "content": mark} for ...])
    for seg in template_segments(rendered, messages, marks):
        tokens += tokenize(seg.text, parse_special=seg.trusted)
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from core.errors import BackendError, InputError
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


@dataclass(frozen=True)
class Segment:
    """A piece of a prompt: template markup (``trusted``) or a message's text (never special-parsed)."""

    text: str
    trusted: bool


def message_marks(count: int) -> list[str]:
    """One unguessable placeholder per message, rendered through the chat template instead of its text."""
    return [f"\x1dHEARTH-MESSAGE-{i}-{secrets.token_hex(8)}\x1d" for i in range(count)]


def template_segments(rendered: str, messages: Sequence[Message], marks: Sequence[str]) -> list[Segment]:
    """Cut a template rendered with ``marks`` as message contents into markup and message text.

    BackendError when a mark is missing (a template that rewrites message text: its output could
    not be kept apart from the markup).
    """
    segments: list[Segment] = []
    rest = rendered
    for message, mark in zip(messages, marks, strict=True):
        markup, found, rest = rest.partition(mark)
        if not found or mark in rest:
            raise BackendError(
                "The model's chat template changes message text, so Hearth cannot keep documents from "
                "writing control tokens — set llm.local.prompt_format: completion for this model."
            )
        segments += [Segment(markup, True), Segment(message.content, False)]
    segments.append(Segment(rest, True))
    return [s for s in segments if s.text]


def drop_doubled_bos(tokens: list[int]) -> list[int]:
    """The prompt without the second BOS a template that writes ``{{ bos_token }}`` adds to the tokenizer's."""
    return tokens[1:] if len(tokens) > 1 and tokens[0] == tokens[1] else tokens


# What chat templates use as control tokens, written as text: ChatML, Llama 3, Phi, Qwen, harmony
# and Command-R ``<|…|>``; DeepSeek's fullwidth ``<｜…｜>``; Gemma's ``<start_of_turn>`` family and
# the ``<s>``/``</s>`` of SentencePiece models; StarCoder's metadata tokens; Mistral's ``[INST]`` family.
_CONTROL_MARKER = re.compile(
    r"<(?=[|｜])[|｜][^<>|｜\n]{1,64}[|｜]>"
    r"|</?(?:s|bos|eos|pad|unk|mask|start_of_turn|end_of_turn|start_of_image|end_of_image|"
    r"image_soft_token|unused\d+|think|tool_call|tool_response|im_start|im_end|endoftext|"
    # StarCoder-family metadata and fill-in-the-middle tokens (SmolLM2 and code models).
    r"repo_name|reponame|file_sep|filename|gh_stars|issue_start|issue_comment|issue_closed|"
    r"jupyter_start|jupyter_text|jupyter_code|jupyter_output|jupyter_script|empty_output|"
    r"commit_before|commit_msg|commit_after|fim_prefix|fim_middle|fim_suffix|fim_pad)>"
    r"|\[/?(?:INST|SYSTEM_PROMPT|AVAILABLE_TOOLS|TOOL_CALLS|TOOL_RESULTS|TOOL_CONTENT|IMG)\]",
    re.I,
)
_LOOKALIKE = str.maketrans({"<": "‹", ">": "›", "[": "⟦", "]": "⟧"})


def neutralize_control_markers(text: str) -> str:
    """Text with every known control-token spelling made inert (``<|im_start|>`` → ``‹|im_start|›``).

    For backends that tokenize on the other side of an API (the remote OpenAI-compatible one): a
    llama.cpp or vLLM server renders the chat template and parses special tokens in the result, so
    a marker written in a document would become a control token there. The local engines need no
    rewriting; they tokenize message text without special-token parsing.
    """
    return _CONTROL_MARKER.sub(lambda m: m.group().translate(_LOOKALIKE), text)
