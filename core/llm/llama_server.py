"""The default local backend: llama.cpp's llama-server with parallel slots, supervised by Hearth.

Every generation goes through the server's native ``/completion`` endpoint with the prompt
as tokens (so the context check happens before a slot is used), streamed as server-sent
events. A GGUF with a chat template is rendered through the server's ``/apply-template``; a
base model (the bundled Gemma) gets the same plain completion prompt as the in-process
engine. Closing the stream (the asker went away) closes the HTTP request, which makes the
server stop that generation and free its slot.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import TypedDict, TypeVar

import aiohttp

from core import metrics
from core.errors import BackendError, BackendUnavailable, InputError
from core.jsontypes import JsonObject, JsonValue
from core.llm.base import Chunk, GenOptions, Message, Usage
from core.llm.config import LLMSettings, LocalLLMSettings
from core.llm.engine import EngineProcess, EngineState
from core.llm.gguf import gguf_has_key
from core.llm.prompting import (
    completion_prompt,
    drop_doubled_bos,
    fit_max_tokens,
    message_marks,
    template_segments,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

# A stream that sends nothing for this long is a hung engine: the health check will restart it.
_READ_TIMEOUT_S = 120.0


class _CompletionBody(TypedDict):
    """The request body of llama-server's native ``/completion`` endpoint, as Hearth sends it."""

    prompt: list[int]
    n_predict: int
    temperature: float
    top_p: float
    repeat_penalty: float
    seed: int
    stop: list[str]
    stream: bool
    cache_prompt: bool


class LlamaServerBackend:
    """Streams completions from a supervised llama-server child (see :mod:`core.llm.engine`)."""

    name = "llama_server"
    raw_prompts = True  # takes GenOptions.prompt_parts (code completion)

    def __init__(self, settings: LocalLLMSettings, engine: EngineProcess | None = None) -> None:
        self.settings = settings
        self._engine = engine
        self._path: Path | None = engine.model_path if engine else settings.model_path
        self._chat = False
        self._format_known = False

    @property
    def engine(self) -> EngineProcess:
        """The supervised process (created on first use, when the model path is known)."""
        if self._engine is None:
            from core.llm.llama_cpp import bundled_model_path

            path = self.settings.model_path or bundled_model_path()
            if not path.is_file():
                raise BackendUnavailable(
                    f"No model file at {path} — set llm.local.model_path or run 'hearth doctor'."
                )
            self._path = path
            self._engine = EngineProcess(self.settings, path)
        return self._engine

    @property
    def model(self) -> str:
        """The model file's name without extension."""
        return (self._path or Path("gemma-3-270m-q4_k_m.gguf")).stem

    @property
    def slots(self) -> int:
        """Generations the engine runs at the same time."""
        return self.settings.parallel

    @property
    def loaded(self) -> bool:
        """Whether the engine is up with the model loaded."""
        return self._engine is not None and self._engine.state is EngineState.READY

    @property
    def down_reason(self) -> str | None:
        """Why the engine is not serving after it has run or tried to (None while fine or never started)."""
        engine = self._engine
        if engine is None or engine.state is EngineState.READY:
            return None
        return engine.last_error

    @property
    def uses_chat_template(self) -> bool:
        """Whether prompts go through the model's chat template (known after load)."""
        return self._chat

    @property
    def load_seconds(self) -> float | None:
        """How long the engine took to start and load the model."""
        return self._engine.load_seconds if self._engine else None

    async def load(self) -> None:
        """Start the engine (once) and tell from the model file how to prompt it."""
        engine = self.engine
        await engine.ensure_ready()
        if self._format_known:
            return
        # Not /props: llama-server reports a default template for a GGUF that has none.
        has_template = await asyncio.to_thread(gguf_has_key, engine.model_path, "tokenizer.chat_template")
        fmt = self.settings.prompt_format
        self._chat = fmt == "chat" or (fmt == "auto" and has_template)
        self._format_known = True
        log.info(
            "local engine serves %s with %d slots, %s prompts",
            self.model, self.settings.parallel, "chat-template" if self._chat else "completion",
        )  # fmt: skip

    async def count_tokens(self, text: str) -> int:
        """Tokens ``text`` takes for this model."""
        await self.load()
        return len(await self._tokenize(text, add_special=False, parse_special=False))

    async def stream(self, messages: Sequence[Message], options: GenOptions) -> AsyncIterator[Chunk]:
        """Stream one completion; the final chunk carries usage and the finish reason.

        An engine found dead before the first token (it crashed a moment ago and the supervisor has
        not noticed yet) is waited for while the supervisor restarts it, and the request is sent once
        more; after the first token, a crash is the asker's error.
        """
        for attempt in (1, 2):
            sent = False
            await self.load()
            generation = self.engine.generation
            try:
                async for chunk in self._stream_once(messages, options):
                    sent = True
                    yield chunk
                return
            except BackendUnavailable:
                if sent or attempt == 2 or not await self.engine.recover(generation):
                    raise
                log.info("the local engine had died; sending the request to its restarted successor")

    async def _stream_once(self, messages: Sequence[Message], options: GenOptions) -> AsyncIterator[Chunk]:
        started = time.perf_counter()
        tokens = await self.prompt_tokens(messages, options)
        if self._chat and options.prompt_parts is None:
            stops = list(options.stop)
        else:
            stops = list(dict.fromkeys([*options.stop, *options.completion_stop]))
        max_tokens = fit_max_tokens(len(tokens), options.max_tokens, self.settings.n_ctx)
        body: _CompletionBody = {
            "prompt": tokens,
            "n_predict": max_tokens,
            "temperature": options.temperature,
            "top_p": options.top_p,
            "repeat_penalty": options.repeat_penalty,
            "seed": options.seed if options.seed is not None else self.settings.seed,
            "stop": stops,
            "stream": True,
            "cache_prompt": True,
        }
        usage = Usage(prompt_tokens=len(tokens))
        finish = "stop"
        first = True
        try:
            async with self.engine.session().post(
                "/completion", json=body, timeout=aiohttp.ClientTimeout(sock_read=_READ_TIMEOUT_S)
            ) as resp:
                if resp.status != 200:
                    raise _status_error(resp.status, await resp.text())
                async for event in _events(resp):
                    if "error" in event:
                        raise BackendError(f"The local engine failed while generating: {_message(event)}")
                    content = event.get("content")
                    text = content if isinstance(content, str) else ""
                    if text:
                        if first:
                            metrics.FIRST_TOKEN_SECONDS.labels("local").observe(time.perf_counter() - started)
                            first = False
                        yield Chunk(text=text)
                    if event.get("stop"):
                        usage.completion_tokens = _int(event.get("tokens_predicted"), 0)
                        usage.prompt_tokens = _int(event.get("tokens_evaluated"), usage.prompt_tokens)
                        finish = "length" if event.get("stop_type") == "limit" else "stop"
                        break
                else:
                    raise BackendError("The local engine ended the answer without finishing it.")
        except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError) as exc:
            raise BackendError(f"The local engine stopped in the middle of the answer: {exc}") from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise BackendUnavailable(f"Cannot reach the local engine: {exc}") from exc
        except TimeoutError as exc:
            raise BackendError(f"The local engine sent nothing for {_READ_TIMEOUT_S:.0f}s.") from exc
        metrics.TOKENS.labels("local").inc(usage.completion_tokens)
        metrics.GENERATION_SECONDS.labels("local").observe(time.perf_counter() - started)
        yield Chunk(done=True, usage=usage, model=self.model, finish_reason=finish)

    async def prompt_tokens(self, messages: Sequence[Message], options: GenOptions) -> list[int]:
        """The prompt as tokens. Message text never becomes a control token.

        Only the chat template's own markup is tokenized with special-token parsing; what the
        messages say (questions, retrieved documents, thread history: untrusted text) is tokenized
        as plain text, so a document that writes ``<|im_start|>`` or ``<start_of_turn>`` cannot
        open a turn of its own.
        """
        await self.load()
        if options.prompt_parts is not None:
            return await self._part_tokens(options.prompt_parts)
        if not self._chat:
            prompt = completion_prompt(messages, options.answer_prefix)
            return await self._tokenize(prompt, add_special=True, parse_special=False)
        marks = message_marks(len(messages))
        payload = [{"role": m.role.value, "content": mark} for m, mark in zip(messages, marks, strict=True)]
        rendered = _field(await self._json("POST", "/apply-template", {"messages": payload}), "prompt", str)
        tokens: list[int] = []
        for segment in template_segments(rendered, messages, marks):
            tokens += await self._tokenize(
                segment.text, add_special=not tokens, parse_special=segment.trusted
            )
        return drop_doubled_bos(tokens)

    async def _tokenize(self, text: str, *, add_special: bool, parse_special: bool) -> list[int]:
        if not text:
            return []
        body = {"content": text, "add_special": add_special, "parse_special": parse_special}
        tokens = _field(await self._json("POST", "/tokenize", body), "tokens", list)
        if not all(isinstance(t, int) for t in tokens):
            raise BackendError("The local engine's /tokenize answered something other than token ids.")
        return [t for t in tokens if isinstance(t, int)]

    async def _part_tokens(self, parts: Sequence[str | int]) -> list[int]:
        """A verbatim prompt's tokens: ids as they are, text as plain text (never control tokens)."""
        tokens: list[int] = []
        for part in parts:
            if isinstance(part, int):
                tokens.append(part)
            else:
                tokens += await self._tokenize(part, add_special=False, parse_special=False)
        return tokens

    async def slot_states(self) -> list[JsonObject]:
        """The engine's slots as it reports them (``/slots``): id, is_processing, …."""
        data = await self._json("GET", "/slots")
        return [slot for slot in data if isinstance(slot, dict)] if isinstance(data, list) else []

    async def _json(self, method: str, path: str, body: Mapping[str, object] | None = None) -> JsonValue:
        try:
            async with self.engine.session().request(
                method, path, json=body, timeout=aiohttp.ClientTimeout(total=30)
            ) as resp:
                text = await resp.text()
                if resp.status != 200:
                    raise _status_error(resp.status, text)
                data: JsonValue = json.loads(text)
                return data
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise BackendUnavailable(f"Cannot reach the local engine: {exc}") from exc

    async def aclose(self) -> None:
        """Stop the engine process."""
        if self._engine is not None:
            await self._engine.stop()


async def _events(resp: aiohttp.ClientResponse) -> AsyncIterator[JsonObject]:
    """The JSON objects of a server-sent-event stream (``data: {...}`` lines)."""
    async for raw in resp.content:
        line = raw.strip()
        if not line.startswith(b"data:"):
            continue
        data = line[5:].strip()
        if data == b"[DONE]":
            return
        event: JsonValue = json.loads(data)
        if isinstance(event, dict):
            yield event


def _field(data: JsonValue, key: str, kind: type[T]) -> T:
    """``data[key]`` of an engine answer, which must be a ``kind``; anything else is the engine's fault."""
    value = data.get(key) if isinstance(data, dict) else None
    if not isinstance(value, kind):
        raise BackendError(f"The local engine answered without a usable '{key}'.")
    return value


def _int(value: JsonValue, default: int) -> int:
    """A count from an engine event (a missing, zero or non-numeric one is ``default``)."""
    return int(value) if isinstance(value, (int, float)) and value else default


def _message(payload: JsonObject) -> str:
    error = payload.get("error")
    if isinstance(error, dict):
        return str(error.get("message") or error)
    return str(error or payload)


def _status_error(status: int, text: str) -> Exception:
    try:
        payload: JsonValue = json.loads(text)
    except ValueError:
        payload = {"error": text[:200]}
    message = _message(payload) if isinstance(payload, dict) else text[:200]
    error = payload.get("error") if isinstance(payload, dict) else None
    kind = error.get("type") if isinstance(error, dict) else None
    if kind == "exceed_context_size_error":
        return InputError(
            f"The prompt is too long for the model's context window ({message}) — shorten the question "
            "or raise llm.local.n_ctx."
        )
    if status == 503:
        return BackendUnavailable(f"The local engine is not ready: {message}")
    return BackendError(f"The local engine answered HTTP {status}: {message}")


def from_settings(llm: LLMSettings) -> LlamaServerBackend:
    """The ``server`` engine of ``llm.local`` (the ``hearth.llm_backends`` entry point of that name)."""
    return LlamaServerBackend(llm.local)
