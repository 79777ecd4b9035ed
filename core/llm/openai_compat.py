"""The remote backend: any OpenAI-compatible chat-completions API, through the openai SDK."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Sequence

import openai
from openai.types.chat import (
    ChatCompletionAssistantMessageParam,
    ChatCompletionMessageParam,
    ChatCompletionSystemMessageParam,
    ChatCompletionUserMessageParam,
)

from core import metrics
from core.errors import BackendError, BackendTimeout, BackendUnavailable
from core.llm.base import Chunk, GenOptions, Message, Role, Usage
from core.llm.config import LLMSettings, RemoteLLMSettings
from core.llm.prompting import neutralize_control_markers

log = logging.getLogger(__name__)


class OpenAICompatBackend:
    """Streams chat completions from ``llm.remote.base_url``.

    The SDK retries 408/409/429/5xx and connection errors with exponential backoff
    (``llm.remote.max_retries``), honouring ``Retry-After``; what still fails is translated into
    Hearth's error tree with a sentence that names the setting to check.
    """

    name = "openai_compat"

    def __init__(
        self, settings: RemoteLLMSettings, http_client: openai.DefaultAsyncHttpxClient | None = None
    ) -> None:
        if not settings.base_url:
            raise BackendUnavailable("No remote API configured — set llm.remote.base_url.")
        self.settings = settings
        key = settings.api_key.get_secret_value() if settings.api_key else "not-set"
        self._client = openai.AsyncOpenAI(
            base_url=settings.base_url,
            api_key=key,
            timeout=openai.Timeout(settings.timeout_s, connect=settings.connect_timeout_s),
            max_retries=settings.max_retries,
            http_client=http_client,
        )

    @property
    def model(self) -> str:
        """The remote model name."""
        return self.settings.model

    async def stream(self, messages: Sequence[Message], options: GenOptions) -> AsyncIterator[Chunk]:
        """Stream one chat completion."""
        started = time.perf_counter()
        usage = Usage()
        finish: str | None = None
        model = self.settings.model
        count = 0
        try:
            response = await self._client.chat.completions.create(
                model=self.settings.model,
                messages=[_message_param(m) for m in messages],
                max_tokens=options.max_tokens,
                temperature=options.temperature,
                top_p=options.top_p,
                stream=True,
                stream_options={"include_usage": True},
                stop=options.stop[:4] or openai.omit,
                seed=options.seed if options.seed is not None else openai.omit,
            )
            first = True
            async for event in response:
                model = event.model or model
                if event.usage is not None:
                    usage = Usage(event.usage.prompt_tokens or 0, event.usage.completion_tokens or 0)
                for choice in event.choices:
                    if choice.finish_reason:
                        finish = choice.finish_reason
                    text = choice.delta.content if choice.delta else None
                    if text:
                        if first:
                            metrics.FIRST_TOKEN_SECONDS.labels("remote").observe(
                                time.perf_counter() - started
                            )
                            first = False
                        count += 1
                        yield Chunk(text=text)
        except openai.AuthenticationError as exc:
            raise BackendUnavailable(
                "The remote API rejected the credentials (401) — check llm.remote.api_key."
            ) from exc
        except openai.RateLimitError as exc:
            raise BackendUnavailable(
                f"The remote API is rate limiting requests (429) after {self.settings.max_retries} retries."
            ) from exc
        except openai.APITimeoutError as exc:
            raise BackendTimeout(
                f"The remote API did not answer within {self.settings.timeout_s:.0f}s (llm.remote.timeout_s)."
            ) from exc
        except openai.APIConnectionError as exc:
            # The address is the operator's business: it goes to the log, not into the sentence
            # that reaches chat users and REST clients.
            log.warning("cannot reach the remote API at %s: %s", self.settings.base_url, exc)
            raise BackendUnavailable("Cannot reach the remote API — check llm.remote.base_url.") from exc
        except openai.APIStatusError as exc:
            raise BackendError(f"The remote API answered HTTP {exc.status_code}.") from exc
        except openai.OpenAIError as exc:
            log.warning("the remote API call to %s failed: %s", self.settings.base_url, exc)
            raise BackendError(f"The remote API call failed ({type(exc).__name__}).") from exc
        if not usage.completion_tokens:
            usage.completion_tokens = count
        metrics.TOKENS.labels("remote").inc(usage.completion_tokens)
        metrics.GENERATION_SECONDS.labels("remote").observe(time.perf_counter() - started)
        yield Chunk(done=True, usage=usage, model=model, finish_reason=finish or "stop")

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self._client.close()


def from_settings(llm: LLMSettings) -> OpenAICompatBackend:
    """The API of ``llm.remote`` (the ``hearth.llm_backends`` entry point ``openai``)."""
    return OpenAICompatBackend(llm.remote)


def _message_param(message: Message) -> ChatCompletionMessageParam:
    """One message in the SDK's typed shape (the role picks the shape).

    The server renders its own chat template around the content and may parse control tokens in
    it (llama.cpp's and vLLM's OpenAI endpoints do), so control-token spellings in the text are
    made inert first.
    """
    content = neutralize_control_markers(message.content)
    if message.role is Role.SYSTEM:
        return ChatCompletionSystemMessageParam(role="system", content=content)
    if message.role is Role.ASSISTANT:
        return ChatCompletionAssistantMessageParam(role="assistant", content=content)
    return ChatCompletionUserMessageParam(role="user", content=content)
