"""Inline code completion: the window around the cursor, the prompt, and a short, cancellable generation.

The editor (``lsp/completion.py``) cuts a window of text around the cursor (:func:`cursor_window`)
and sends it as a :class:`~core.contracts.Completion` through the front door (``Kind.COMPLETE``);
:class:`Completer` renders it with a template of the prompt library and streams a few tokens::

    window = cursor_window(lines, line, column, prefix_chars=3072, suffix_chars=768)
    completer = Completer.of(assistant)
    async for event in completer.stream(Completion(window.prefix, window.suffix, "python")):
        ...                                   # Delta(text) … then the Answer (the suggestion)

**Prompt shape.** When the model's GGUF declares fill-in-the-middle tokens
(``tokenizer.ggml.fim_*``: Qwen2.5-Coder, StarCoder2, CodeLlama, Codestral) the ``complete_fim``
template fills the middle between the text before and after the cursor; otherwise (the bundled
Gemma 3 270M base model declares none) ``complete`` continues the text before the cursor. The
templates place what changes least first (related snippets, then the file's header lines, then the
text up to the cursor) and the window's first line moves in steps of :data:`STEP_LINES`, so
consecutive keystrokes share a long token prefix and llama-server's prompt cache
(``cache_prompt``) evaluates only what was typed since.

**Untrusted text.** The code is sent as plain-text parts of a verbatim prompt
(``GenOptions.prompt_parts``): a file that contains ``<|fim_middle|>`` stays those characters; only
the template's own token variables become control tokens, by id.

**Short generations.** ``max_tokens`` is small, greedy sampling, and the suggestion stops at a
blank line, at the end of the block the cursor is in (a line indented less than the block), or
when it starts repeating the text after the cursor (:mod:`core.code.completion_trim`); closing the
stream stops the engine at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
import time
import weakref
from collections import deque
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from core.code.completion_trim import Trimmer
from core.code.config import CompletionSettings
from core.contracts import Answer, Completion, Delta, Request, Snippet
from core.errors import InputError
from core.llm.base import Chunk, GenOptions, Message, Priority, Role, Usage
from core.llm.config import LLMSettings
from core.llm.gguf import TokenizerInfo, gguf_tokenizer_info
from core.llm.router import Router
from core.prompts.registry import PromptRegistry

log = logging.getLogger(__name__)

# The window's first line moves in steps of this many lines, so the prompt's front stays put
# while the user types (llama-server reuses the cached tokens of an unchanged prompt prefix).
STEP_LINES = 32
# A conservative characters-per-token for code, to turn token budgets into window sizes before
# anything is tokenized (the engine still refuses a prompt that does not fit its context).
CHARS_PER_TOKEN = 3
_COMMENT = {
    "python": "#", "shell": "#", "ruby": "#", "yaml": "#", "toml": "#", "r": "#",
    "sql": "--", "lua": "--", "html": "<!--", "markdown": "<!--",
}  # fmt: skip


# --- the window around the cursor ------------------------------------------------------------------
@dataclass(frozen=True)
class Window:
    """The text before and after the cursor that fits the budget; ``start_line`` is the prefix's first line."""

    prefix: str
    suffix: str
    start_line: int


def cursor_window(
    lines: Sequence[str], line: int, column: int, *, prefix_chars: int, suffix_chars: int
) -> Window:
    """Cut the window around (``line``, ``column``) of ``lines`` (kept line ends), reading only the window.

    The prefix starts on a line that is a multiple of :data:`STEP_LINES` (the latest such line that
    fits), so it changes only at its end while the user types; a cursor past the end is clamped.
    """
    if not lines:
        return Window("", "", 0)
    line = min(max(line, 0), len(lines) - 1)
    current = lines[line]
    column = min(max(column, 0), len(current.rstrip("\r\n")))
    head, tail = current[:column], current[column:]
    used = len(head)
    first = line
    while first > 0 and used + len(lines[first - 1]) <= prefix_chars:
        first -= 1
        used += len(lines[first])
    if first < line:
        first = min(line, -(-first // STEP_LINES) * STEP_LINES)  # round up to the step: it still fits
    prefix = "".join(lines[first:line]) + head
    if len(prefix) > prefix_chars:  # one enormous line (minified code): keep its end
        prefix = prefix[-prefix_chars:]
    parts = [tail]
    size = len(tail)
    for nxt in lines[line + 1 :]:
        if size + len(nxt) > suffix_chars:
            break
        parts.append(nxt)
        size += len(nxt)
    suffix = "".join(parts)[: max(suffix_chars, 0)]
    return Window(prefix, suffix, first)


# --- the prompt ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class CompletionPrompt:
    """A rendered completion prompt: plain-text parts and control-token ids, and how it was shaped."""

    template: str
    parts: list[str | int]
    fim: bool
    stop: list[str]
    shown: str  # the prompt as text, control tokens written out (logs, `hearth prompts render`)


def comment_prefix(language: str) -> str:
    """How a line comment starts in ``language`` (``//`` unless known otherwise)."""
    return _COMMENT.get(language, "//")


def build_prompt(
    prompts: PromptRegistry, completion: Completion, info: TokenizerInfo, *, fim: bool = True
) -> CompletionPrompt:
    """Render ``completion`` with ``complete_fim`` (the model declares FIM tokens, ``fim``) or ``complete``.

    Every input is rendered as a random mark, and the output is cut at the marks: the template's
    text and the code become plain-text parts, the token variables become their ids.
    """
    use_fim = fim and info.fim
    values: dict[str, str | int] = {}

    def mark(value: str | int) -> str:
        # Private-use characters: the registry strips whitespace, and \x1c-\x1f count as whitespace.
        key = f"\ue000HEARTH-{len(values)}-{secrets.token_hex(6)}\ue001"
        values[key] = value
        return key

    tokens = {
        name: (mark(tok.id) if tok is not None else "")
        for name, tok in (
            ("bos", info.bos),
            ("fim_prefix", info.prefix),
            ("fim_suffix", info.suffix),
            ("fim_middle", info.middle),
            ("repo_name", info.repo),
            ("file_sep", info.file_sep),
        )
    }
    path = completion.path or f"untitled.{completion.language}"
    variables: dict[str, object] = {
        "prefix": mark(completion.prefix),
        "language": completion.language,
        "path": mark(path),
        "comment": comment_prefix(completion.language),
        "snippets": [{"path": mark(s.path), "text": mark(s.text)} for s in completion.snippets],
        "bos": tokens["bos"],
    }
    if use_fim:
        variables["suffix"] = mark(completion.suffix)
        variables |= {k: v for k, v in tokens.items() if k != "bos"}
    name = "complete_fim" if use_fim else "complete"
    rendered = prompts.render(name, **variables)
    text = rendered.messages[-1].content
    parts: list[str | int] = []
    shown: list[str] = []
    declared = (info.bos, info.prefix, info.suffix, info.middle, info.repo, info.file_sep)
    texts = {tok.id: tok.text for tok in declared if tok is not None}
    for piece in re.split("(\ue000HEARTH-\\d+-[0-9a-f]{12}\ue001)", text):
        if not piece:
            continue
        value = values.get(piece, piece)
        if value == "":
            continue
        if isinstance(value, int):
            parts.append(value)
            shown.append(texts.get(value, f"<{value}>"))
        else:
            if parts and isinstance(parts[-1], str):
                parts[-1] += value  # one text part tokenizes as the model saw such text in training
            else:
                parts.append(value)
            shown.append(value)
    return CompletionPrompt(name, parts, use_fim, list(rendered.stop), "".join(shown))


# --- the generation -----------------------------------------------------------------------------
@dataclass
class CompletionStats:
    """What the completer did: generations started, finished and cancelled (and how far those got)."""

    started: int = 0
    finished: int = 0
    cancelled: int = 0
    failed: int = 0
    # Tokens each cancelled generation had streamed when it was stopped (the latest 1000).
    cancelled_tokens: deque[int] = field(default_factory=lambda: deque(maxlen=1000))

    def as_dict(self) -> dict[str, object]:
        """JSON form."""
        return {
            "started": self.started,
            "finished": self.finished,
            "cancelled": self.cancelled,
            "failed": self.failed,
            "cancelled_tokens": list(self.cancelled_tokens),
        }


class _LspSection(Protocol):
    @property
    def completion(self) -> CompletionSettings: ...


class _Configured(Protocol):
    @property
    def lsp(self) -> _LspSection: ...

    @property
    def llm(self) -> LLMSettings: ...


class CompletionEngine(Protocol):
    """What the completer uses of the assistant (``core.assistant.Assistant`` is one).

    Declared here so the use case above (the assistant, the intake) hands itself in and this
    module never imports it: its router, its prompt library, and the ``llm`` and ``lsp.completion``
    sections of its settings.
    """

    @property
    def settings(self) -> _Configured:
        """The settings the assistant was built from."""
        ...

    @property
    def router(self) -> Router:
        """The local engine (and the remote fallback, which completion never uses)."""
        ...

    @property
    def prompts(self) -> PromptRegistry:
        """The prompt library (``complete`` and ``complete_fim``)."""
        ...


class Completer:
    """Streams inline suggestions from the assistant's router (local engine only, editor priority)."""

    _by_assistant: weakref.WeakKeyDictionary[CompletionEngine, Completer] = weakref.WeakKeyDictionary()

    def __init__(self, assistant: CompletionEngine) -> None:
        self.assistant = assistant
        self.settings = assistant.settings.lsp.completion
        self.stats = CompletionStats()
        self._info: TokenizerInfo | None = None
        self._info_lock = asyncio.Lock()

    @classmethod
    def of(cls, assistant: CompletionEngine) -> Completer:
        """The completer of ``assistant`` (one per assistant: it caches the model's tokenizer facts)."""
        completer = cls._by_assistant.get(assistant)
        if completer is None:
            completer = cls._by_assistant[assistant] = cls(assistant)
        return completer

    async def tokenizer_info(self) -> TokenizerInfo:
        """The local model's FIM and BOS tokens, read once from its GGUF header."""
        if self._info is None:
            async with self._info_lock:
                if self._info is None:
                    self._info = await asyncio.to_thread(self._read_info)
                    log.info(
                        "code completion: %s prompts for this model",
                        "fill-in-the-middle" if self._info.fim else "prefix-only",
                    )
        return self._info

    def _read_info(self) -> TokenizerInfo:
        local = self.assistant.settings.llm.local
        if not local.enabled:
            return TokenizerInfo()
        path = local.model_path
        if path is None:
            from core.llm.llama_cpp import bundled_model_path

            try:
                path = bundled_model_path()
            except Exception as exc:  # noqa: BLE001 - no model file: the engine will say so
                log.info("code completion: no model file to read FIM tokens from (%s)", exc)
                return TokenizerInfo()
        return gguf_tokenizer_info(path)

    def _model_name(self) -> str:
        local = self.assistant.router.local
        return local.model if local is not None else ""

    def prompt(self, completion: Completion, info: TokenizerInfo, *, shrink: int = 1) -> CompletionPrompt:
        """The prompt for ``completion``, clipped to this server's budgets and its model's context.

        The prefix is cut with :func:`cursor_window` again (its first line moves in steps), so a
        prefix the editor sent in full stays cache-friendly when the server keeps less of it;
        ``shrink`` divides every budget (a retry after the engine found the prompt too long).
        """
        s = self.settings
        # What fits beside the answer in one slot's context (template text and margin: 64 tokens).
        room = max(64, self.assistant.settings.llm.local.n_ctx - s.max_tokens - 64) // shrink
        snippet_tokens = min(s.snippet_tokens // shrink, room // 4)
        suffix_tokens = min(s.suffix_tokens // shrink, room // 4)
        prefix_tokens = min(s.prefix_tokens // shrink, room - snippet_tokens - suffix_tokens)
        lines = completion.prefix.splitlines(keepends=True)
        if not lines or lines[-1].endswith(("\n", "\r")):
            lines.append("")
        prefix = cursor_window(
            lines,
            len(lines) - 1,
            len(lines[-1]),
            prefix_chars=prefix_tokens * CHARS_PER_TOKEN,
            suffix_chars=0,
        ).prefix
        suffix = completion.suffix[: suffix_tokens * CHARS_PER_TOKEN]
        budget = snippet_tokens * CHARS_PER_TOKEN
        snippets = []
        for snippet in completion.snippets[: s.snippets]:
            if budget <= 0:
                break
            snippets.append(Snippet(snippet.path, snippet.text[:budget]))
            budget -= len(snippets[-1].text)
        clipped = Completion(prefix, suffix, completion.language, completion.path, tuple(snippets))
        return build_prompt(self.assistant.prompts, clipped, info, fim=s.fim == "auto")

    def options(self, completion: Completion, prompt: CompletionPrompt, request: Request) -> GenOptions:
        """Short, greedy, at the asker's priority; stops at a blank line when configured."""
        s = self.settings
        return GenOptions(
            max_tokens=min(completion.max_tokens or s.max_tokens, s.max_tokens),
            temperature=s.temperature,
            stop=list(prompt.stop) + (["\n\n"] if s.stop_at_blank_line else []),
            repeat_penalty=1.0,  # code repeats itself; a penalty makes suggestions worse
            seed=self.assistant.settings.llm.local.seed,
            priority=request.priority,
            prompt_parts=prompt.parts,
        )

    async def stream(
        self, completion: Completion, *, request: Request | None = None
    ) -> AsyncIterator[Delta | Answer]:
        """Generate the suggestion for ``completion``: one Delta with it (when not empty), then the Answer.

        A prompt the engine finds too long for its context (code that takes more tokens than the
        estimate) is sent once more with half the budgets.
        """
        started = time.perf_counter()
        request = request or Request(text="complete code", surface="lsp", priority=Priority.EDITOR)
        s = self.settings
        info = await self.tokenizer_info()
        prompt = self.prompt(completion, info)
        trimmer = Trimmer(
            completion.prefix,
            completion.suffix if prompt.fim else "",
            s.stop_at_blank_line,
            s.stop_at_block_end,
        )
        text, tokens, final, first_ms = "", 0, Chunk(done=True, usage=Usage()), 0.0
        self.stats.started += 1
        try:
            for attempt in (1, 2):
                try:
                    options = self.options(completion, prompt, request)
                    stream = self.assistant.router.stream([Message(Role.USER, prompt.shown)], options)
                    async with contextlib.aclosing(stream) as chunks:  # type: ignore[type-var]
                        async for chunk in chunks:
                            if chunk.text:
                                tokens += 1
                                first_ms = first_ms or (time.perf_counter() - started) * 1000
                                text += chunk.text
                                if trimmer.cut(text) is not None:
                                    break  # closing the stream stops the engine
                            if chunk.done:
                                final = chunk
                    break
                except InputError:
                    if attempt == 2 or tokens:
                        raise
                    log.debug("completion prompt too long for the context; halving its budgets")
                    prompt = self.prompt(completion, info, shrink=2)
        except asyncio.CancelledError:
            self.stats.cancelled += 1
            self.stats.cancelled_tokens.append(tokens)
            raise
        except Exception:
            self.stats.failed += 1
            raise
        self.stats.finished += 1
        suggestion = trimmer.final(text)
        if suggestion:
            yield Delta(suggestion)
        usage = final.usage or Usage(completion_tokens=tokens)
        yield Answer(
            text=suggestion,
            citations=[],
            backend=final.backend or "local",
            model=final.model or self._model_name(),
            usage=usage,
            timings_ms={"first_token": first_ms, "total": (time.perf_counter() - started) * 1000},
            notices=[] if prompt.fim else ["prefix-only"],
            request_id=request.request_id,
        )
