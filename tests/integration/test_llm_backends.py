"""The real llama.cpp backend with the bundled model, and the real openai SDK against a loopback API."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from core.errors import AllBackendsFailed, BackendError, BackendTimeout, BackendUnavailable, InputError
from core.llm.base import GenOptions, Message, Role, collect
from core.llm.config import LocalLLMSettings, RemoteLLMSettings, RoutingSettings
from core.llm.llama_cpp import LlamaCppBackend
from core.llm.openai_compat import OpenAICompatBackend
from core.llm.router import Router
from tests.fixtures.openai_server import FakeOpenAI

QUESTION = [Message(Role.USER, 'def fibonacci(n):\n    """Return the n-th Fibonacci number."""')]


@pytest.fixture
async def llama(bundled_model: Path):  # type: ignore[no-untyped-def]
    backend = LlamaCppBackend(LocalLLMSettings(n_ctx=512, n_threads=2))
    yield backend
    await backend.aclose()


def remote(server: FakeOpenAI, **kw: object) -> OpenAICompatBackend:
    return OpenAICompatBackend(RemoteLLMSettings(base_url=server.base_url, api_key="sk-test", **kw))  # type: ignore[arg-type]


@pytest.mark.llama
async def test_bundled_model_streams_tokens_with_usage(llama: LlamaCppBackend) -> None:
    chunks = [c async for c in llama.stream(QUESTION, GenOptions(max_tokens=12, temperature=0))]
    text = "".join(c.text for c in chunks)
    final = chunks[-1]
    assert final.done and text.strip()
    assert sum(1 for c in chunks if c.text) > 1, "tokens must arrive one by one, not all at the end"
    assert (
        final.usage is not None and 0 < final.usage.completion_tokens <= 12 and final.usage.prompt_tokens > 5
    )
    assert final.model == "gemma-3-270m-q4_k_m"
    assert not llama.uses_chat_template  # a base model: completion prompts


@pytest.mark.llama
async def test_cancelling_stops_generation_promptly(
    llama: LlamaCppBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    pulled: list[tuple[str, str | None]] = []  # every part the worker thread took from llama.cpp
    generate = llama._generate

    def counting(*args: Any, **kwargs: Any) -> Any:
        for part in generate(*args, **kwargs):
            pulled.append(part)
            yield part

    monkeypatch.setattr(llama, "_generate", counting)
    stream = llama.stream(QUESTION, GenOptions(max_tokens=400, temperature=0.8))
    async for _ in stream:
        break
    await stream.aclose()  # type: ignore[attr-defined]
    # aclose waits for the worker: it was cut off mid-answer (no finish reason), far short of 400.
    stopped_at = len(pulled)
    assert pulled and pulled[-1][1] is None and stopped_at < 100, pulled
    # The model is free again straight away.
    text, _ = await collect(llama.stream(QUESTION, GenOptions(max_tokens=4)))
    assert text


@pytest.mark.llama
async def test_prompt_longer_than_context_is_a_clear_error(llama: LlamaCppBackend) -> None:
    huge = [Message(Role.USER, "word " * 3000)]
    with pytest.raises(InputError, match="context window"):
        await collect(llama.stream(huge, GenOptions(max_tokens=8)))


async def test_missing_model_file_names_the_setting(tmp_path: Path) -> None:
    backend = LlamaCppBackend(LocalLLMSettings(model_path=tmp_path / "absent.gguf"))
    with pytest.raises(BackendUnavailable, match="llm.local.model_path"):
        await collect(backend.stream(QUESTION, GenOptions()))


async def test_corrupt_model_file_names_the_setting(tmp_path: Path) -> None:
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + b"\x00garbage" * 100)
    backend = LlamaCppBackend(LocalLLMSettings(model_path=bad))
    with pytest.raises(BackendUnavailable, match="llm.local.model_path"):
        await collect(backend.stream(QUESTION, GenOptions()))


async def test_remote_streams_with_usage(openai_server: FakeOpenAI) -> None:
    backend = remote(openai_server)
    text, final = await collect(backend.stream(QUESTION, GenOptions(max_tokens=20, stop=["\n\n"])))
    await backend.aclose()
    assert text == openai_server.reply
    assert (
        final.model == "fake-remote-model" and final.usage is not None and final.usage.completion_tokens == 6
    )
    sent = openai_server.requests[0]
    assert sent["stream"] is True and sent["max_tokens"] == 20 and sent["stop"] == ["\n\n"]
    assert openai_server.auth_headers[0] == "Bearer sk-test"


async def test_remote_401_says_check_the_key(openai_server: FakeOpenAI) -> None:
    openai_server.plan = ["401"]
    backend = remote(openai_server)
    with pytest.raises(BackendUnavailable, match="llm.remote.api_key"):
        await collect(backend.stream(QUESTION, GenOptions()))
    await backend.aclose()


async def test_remote_429_is_retried_then_succeeds(openai_server: FakeOpenAI) -> None:
    openai_server.plan = ["429", "500"]
    backend = remote(openai_server, max_retries=2)
    text, _ = await collect(backend.stream(QUESTION, GenOptions()))
    await backend.aclose()
    assert text == openai_server.reply and len(openai_server.requests) == 3


async def test_remote_429_beyond_retries_is_a_clear_error(openai_server: FakeOpenAI) -> None:
    openai_server.plan = ["429", "429"]
    backend = remote(openai_server, max_retries=1)
    with pytest.raises(BackendUnavailable, match="429"):
        await collect(backend.stream(QUESTION, GenOptions()))
    await backend.aclose()
    assert len(openai_server.requests) == 2, "bounded retries"


async def test_remote_that_hangs_times_out(openai_server: FakeOpenAI) -> None:
    openai_server.plan = ["hang"]
    backend = remote(openai_server, timeout_s=0.5, max_retries=0)
    started = time.perf_counter()
    with pytest.raises(BackendTimeout, match="llm.remote.timeout_s"):
        await collect(backend.stream(QUESTION, GenOptions()))
    await backend.aclose()
    assert time.perf_counter() - started < 5


async def test_remote_that_stalls_mid_stream_is_an_error_not_a_hang(openai_server: FakeOpenAI) -> None:
    openai_server.plan = ["stall"]
    backend = remote(openai_server, timeout_s=0.5, max_retries=0)
    with pytest.raises(BackendError):
        await asyncio.wait_for(collect(backend.stream(QUESTION, GenOptions())), 10)
    await backend.aclose()


async def test_dead_local_model_falls_back_to_the_remote_api(
    tmp_path: Path, openai_server: FakeOpenAI
) -> None:
    local = LlamaCppBackend(LocalLLMSettings(model_path=tmp_path / "gone.gguf"))
    router = Router(local=local, remote=remote(openai_server), routing=RoutingSettings())
    text, final = await collect(router.stream(QUESTION, GenOptions()))
    assert (text, final.backend, final.model) == (openai_server.reply, "remote", "fake-remote-model")
    assert router.breaker.is_open, "a model that cannot load is not retried on every request"
    await router.aclose()


async def test_both_down_gives_one_sentence(tmp_path: Path, openai_server: FakeOpenAI) -> None:
    openai_server.plan = ["500", "500", "500"]
    local = LlamaCppBackend(LocalLLMSettings(model_path=tmp_path / "gone.gguf"))
    router = Router(local=local, remote=remote(openai_server, max_retries=1))
    with pytest.raises(AllBackendsFailed) as err:
        await collect(router.stream(QUESTION, GenOptions()))
    assert "llm.local.model_path" in str(err.value) and "HTTP 500" in str(err.value)
    await router.aclose()
