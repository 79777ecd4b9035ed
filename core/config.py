"""The one Settings tree: ``hearth.yaml`` plus ``HEARTH_SECTION__KEY`` environment overrides.

Load it once at the edge (``main()`` or an app factory) and pass it down::

    settings = load_settings(Path("hearth.yaml"))
    settings.llm.local.n_ctx

Environment variables win over the file: ``HEARTH_LLM__LOCAL__N_GPU_LAYERS=-1``.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from core.code.config import CompletionSettings, SandboxSettings
from core.digests.config import DigestSpec
from core.errors import ConfigError
from core.home import default_home
from core.jsontypes import JsonObject, JsonValue
from core.llm.config import LLMSettings
from core.prompts.config import PromptSettings
from core.retrieval.config import EmbedSettings, RetrievalSettings, SourceSpec, StoreSettings
from core.section import Section
from core.tables.config import TableSourceSpec, TablesSettings


class DatabaseSettings(Section):
    """State: job store, run records, audit log, event de-duplication, tokens."""

    url: SecretStr | None = Field(
        None,
        description="SQLAlchemy URL (postgresql+psycopg://… in production). Empty: SQLite at <home>/hearth.db.",
    )


class ServerSettings(Section):
    """The `hearth serve` HTTP process."""

    host: str = Field("127.0.0.1", description="Address to bind.")
    port: int = Field(8080, ge=0, le=65535, description="Port to bind (0 picks a free one).")
    max_body_bytes: int = Field(1_048_576, ge=1024, description="Largest accepted request body.")
    shutdown_timeout_s: float = Field(20.0, ge=0, description="Time in-flight answers get on SIGTERM.")
    rate_limit_per_minute: int = Field(60, ge=1, description="REST requests per token per minute.")
    completion_rate_limit_per_minute: int = Field(
        1200,
        ge=1,
        description="Inline suggestions (POST /v1/code/complete) per token per minute, counted apart "
        "from the other requests: an editor asks about once per keystroke.",
    )
    header_timeout_s: float = Field(
        10.0,
        gt=0,
        description="Seconds a connection gets to send a request's headers (also how long an idle "
        "keep-alive connection stays open); a slower client is disconnected.",
    )
    body_timeout_s: float = Field(
        30.0, gt=0, description="Seconds a client gets to send a request's body; a slower one gets 408."
    )
    max_connections: int = Field(
        512,
        ge=8,
        description="Open client connections at most. At the cap the oldest connection still waiting "
        "for its request is closed to make room, so slow clients cannot starve the others.",
    )


_SLASH_COMMAND = r"^/[a-z0-9_-]{1,31}$"


class SlackCommands(Section):
    """The slash command names the Slack app registers (rename one to avoid a clash with another app)."""

    ask: str = Field("/ask", pattern=_SLASH_COMMAND, description="Ask the docs.")
    data: str = Field("/data", pattern=_SLASH_COMMAND, description="Ask the tables.")
    explain: str = Field("/explain", pattern=_SLASH_COMMAND, description="Explain a code snippet.")
    digest: str = Field("/digest", pattern=_SLASH_COMMAND, description="Manage scheduled digests.")
    help: str = Field("/hearth", pattern=_SLASH_COMMAND, description="Help (`<name> help`).")

    @model_validator(mode="after")
    def _distinct(self) -> SlackCommands:
        names = list(self.model_dump().values())
        if len(set(names)) != len(names):
            raise ValueError(f"slack.commands must name five different commands, got {', '.join(names)}")
        return self


class SlackSettings(Section):
    """The Slack bot."""

    enabled: bool = Field(False, description="Mount the Slack bot in `hearth serve`.")
    mode: Literal["http", "socket"] = Field("http", description="HTTP Events API or Socket Mode.")
    bot_token: SecretStr | None = Field(None, description="Bot token (xoxb-…).")
    signing_secret: SecretStr | None = Field(None, description="Signing secret for request verification.")
    app_token: SecretStr | None = Field(None, description="App-level token (xapp-…) for Socket Mode.")
    api_base_url: str = Field("https://slack.com/api/", description="Slack Web API base URL.")
    default_acl: list[str] = Field(
        default_factory=lambda: ["public"], description="Tokens every Slack user holds."
    )
    user_groups: dict[str, list[str]] = Field(
        default_factory=dict, description="Slack user-group id -> ACL tokens its members get."
    )
    users: dict[str, list[str]] = Field(
        default_factory=dict, description="Slack user id -> extra ACL tokens."
    )
    channels: dict[str, list[str]] = Field(
        default_factory=dict, description="Channel id -> ACL tokens granted inside that channel."
    )
    rate_limit_per_minute: int = Field(10, ge=1, description="Questions per user per minute.")
    max_question_chars: int = Field(4000, ge=10, description="Longer questions get a polite limit message.")
    update_interval_s: float = Field(
        1.0, ge=0.1, description="Minimum seconds between streamed message updates."
    )
    history_max_chars: int = Field(
        4000, ge=200, description="Thread history sent with a follow-up; older turns are summarized to fit."
    )
    commands: SlackCommands = Field(
        default_factory=SlackCommands,
        description="Slash command names; they must match the app's manifest (deploy/slack-manifest.yaml).",
    )
    thread_follow_ups: bool = Field(
        True, description="Answer replies in a thread Hearth has answered in, without a new @-mention."
    )


class DingTalkWebhook(Section):
    """A custom-robot webhook for proactive posts."""

    url: str = Field(description="Webhook URL with access_token.")
    secret: SecretStr | None = Field(None, description="Signing secret (SEC…).")


class DingTalkSettings(Section):
    """The DingTalk bot."""

    enabled: bool = Field(False, description="Mount the DingTalk bot in `hearth serve`.")
    mode: Literal["stream", "http"] = Field("stream", description="Stream mode (WebSocket) or HTTP callback.")
    client_id: str | None = Field(None, description="App key / client id.")
    client_secret: SecretStr | None = Field(None, description="App secret; also signs callbacks.")
    robot_code: str | None = Field(None, description="Robot code for cards and proactive messages.")
    webhooks: dict[str, DingTalkWebhook] = Field(
        default_factory=dict, description="Named custom-robot webhooks."
    )
    api_base_url: str = Field("https://api.dingtalk.com", description="DingTalk OpenAPI base URL.")
    default_acl: list[str] = Field(
        default_factory=lambda: ["public"], description="Tokens every DingTalk user holds."
    )
    users: dict[str, list[str]] = Field(
        default_factory=dict, description="DingTalk staff id -> extra ACL tokens."
    )
    conversations: dict[str, list[str]] = Field(
        default_factory=dict, description="Conversation id -> ACL tokens granted inside it."
    )
    max_question_chars: int = Field(4000, ge=10, description="Longer questions get a polite limit message.")
    rate_limit_per_minute: int = Field(10, ge=1, description="Questions per user per minute.")
    language: Literal["auto", "zh", "en"] = Field(
        "auto", description="Reply language; auto answers in Chinese when the question contains Chinese."
    )
    card_template_id: str | None = Field(
        None, description="AI card template id; when set (with client_id/secret) answers stream into a card."
    )
    fallback_webhook: str | None = Field(
        None, description="Webhook name used when a sessionWebhook expired and no robot_code is set."
    )
    request_timeout_s: float = Field(10.0, gt=0, description="Timeout of every call to DingTalk.")
    session_webhook_origins: list[str] = Field(
        default_factory=lambda: ["https://oapi.dingtalk.com", "https://api.dingtalk.com"],
        description="Where a message's sessionWebhook may point (scheme://host[:port]); replies go nowhere else.",
    )


class LspSettings(Section):
    """The language server."""

    server_url: str | None = Field(
        None, description="Use a remote `hearth serve` instead of the in-process core."
    )
    token: SecretStr | None = Field(None, description="Bearer token for server_url.")
    index_workspace: bool = Field(True, description="Index the workspace for context on open and save.")
    idle_timeout_s: float = Field(
        60.0, gt=0, description="Remote mode: give up when the server has sent nothing for this many seconds."
    )
    user: str | None = Field(
        None,
        description="In-process mode: who the editor user is (default: the OS user running `hearth lsp`).",
    )
    acl: list[str] = Field(
        default_factory=lambda: ["public"],
        description="In-process mode: the ACL tokens the editor user holds for team docs (plus user:lsp:<user>).",
    )
    completion: CompletionSettings = Field(
        default_factory=CompletionSettings, description="Inline code completion as you type."
    )


class Settings(BaseSettings):
    """Root of the configuration tree."""

    model_config = SettingsConfigDict(
        env_prefix="HEARTH_", env_nested_delimiter="__", extra="forbid", validate_default=True
    )

    home: Path = Field(default_factory=default_home, description="Data directory (HEARTH_HOME).")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="Log level.")
    llm: LLMSettings = Field(default_factory=LLMSettings, description="Models and routing.")
    embed: EmbedSettings = Field(default_factory=EmbedSettings, description="Embedder.")
    store: StoreSettings = Field(default_factory=StoreSettings, description="Vector store.")
    retrieval: RetrievalSettings = Field(
        default_factory=RetrievalSettings, description="Chunking and search."
    )
    sources: list[SourceSpec] = Field(default_factory=list, description="Document sources to index.")
    tables: list[TableSourceSpec] = Field(default_factory=list, description="Table sources to query.")
    table_limits: TablesSettings = Field(
        default_factory=TablesSettings, description="Limits on table queries."
    )
    prompts: PromptSettings = Field(default_factory=PromptSettings, description="Prompt templates.")
    database: DatabaseSettings = Field(default_factory=DatabaseSettings, description="State database.")
    server: ServerSettings = Field(default_factory=ServerSettings, description="`hearth serve`.")
    slack: SlackSettings = Field(default_factory=SlackSettings, description="Slack bot.")
    dingtalk: DingTalkSettings = Field(default_factory=DingTalkSettings, description="DingTalk bot.")
    lsp: LspSettings = Field(default_factory=LspSettings, description="Language server.")
    sandbox: SandboxSettings = Field(default_factory=SandboxSettings, description="Code sandbox.")
    digests: list[DigestSpec] = Field(default_factory=list, description="Scheduled digests.")
    digest_admins: list[str] = Field(
        default_factory=list,
        description="Chat user ids (Slack U…, DingTalk staff ids) who may delete any chat-created digest.",
    )

    @model_validator(mode="after")
    def _unique_names(self) -> Settings:
        for label, items in (("sources", self.sources), ("tables", self.tables), ("digests", self.digests)):
            seen: set[str] = set()
            for item in items:
                if item.name in seen:
                    raise ValueError(f"{label}: the name '{item.name}' is used twice")
                seen.add(item.name)
        return self

    @model_validator(mode="after")
    def _digest_references(self) -> Settings:
        from core.digests.config import check_all

        check_all(self)
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The YAML file arrives as init kwargs; environment variables must override it.
        return (env_settings, init_settings)

    def path(self, *parts: str) -> Path:
        """A path under the data directory."""
        return self.home.joinpath(*parts)

    @property
    def store_path(self) -> Path:
        """The local Qdrant directory."""
        return self.store.path or self.path("qdrant")

    @property
    def llama_server_path(self) -> Path | None:
        """The llama-server binary every engine this process starts runs: the local model's and
        the ``llama_cpp`` reranker's (``llm.local.server_path``; None: the one install.sh built)."""
        return self.llm.local.server_path

    @property
    def database_url(self) -> str:
        """The SQLAlchemy URL of the state database."""
        if self.database.url is not None:
            return self.database.url.get_secret_value()
        return f"sqlite:///{self.path('hearth.db')}"

    def masked(self) -> JsonObject:
        """The effective configuration as plain data, with every secret replaced by '**********'."""
        data: JsonObject = self.model_dump(mode="json")
        return data


def _known_keys(model: type[BaseModel] | None, loc: tuple[int | str, ...]) -> list[str]:
    """Field names valid at ``loc`` (best effort, for 'did you mean')."""
    current = model
    for part in loc[:-1]:
        if isinstance(part, int) or current is None:
            continue
        field = current.model_fields.get(part)
        if field is None:
            return []
        ann = field.annotation
        args = getattr(ann, "__args__", None)
        if args:
            ann = next((a for a in args if isinstance(a, type) and issubclass(a, BaseModel)), ann)
        current = ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None
    return list(current.model_fields) if current is not None else []


def describe_validation_error(exc: ValidationError, origin: str) -> str:
    """Turn a pydantic error into lines that name each bad key and what to do."""
    lines: list[str] = []
    from_env = 0
    for err in exc.errors():
        loc = tuple(err["loc"])
        key = ".".join(str(p) for p in loc) or "(root)"
        env = _env_origin(loc)
        if env is not None:
            key = f"{key} (from {env})"
            from_env += 1
        if err["type"] == "extra_forbidden":
            known = _known_keys(Settings, loc)
            hint = difflib.get_close_matches(str(loc[-1]), known, n=1)
            suggestion = f" — did you mean '{hint[0]}'?" if hint else ""
            lines.append(f"  {key}: unknown key{suggestion}")
        else:
            lines.append(f"  {key}: {err['msg']}")
    # Blame the file only for what the file set: errors that all come from the environment say so.
    where = "the environment" if lines and from_env == len(lines) else origin
    return "\n".join([f"Invalid configuration ({where}):", *lines])


def config_path_from(explicit: Path | None) -> Path | None:
    """The config file to read: --config, then HEARTH_CONFIG, then ./hearth.yaml if present."""
    if explicit is not None:
        return explicit
    env = os.environ.get("HEARTH_CONFIG")
    if env:
        return Path(env)
    local = Path("hearth.yaml")
    return local if local.is_file() else None


def load_settings(path: Path | None = None, *, search: bool = True) -> Settings:
    """Read ``path`` (or the default location) and the environment into a validated Settings."""
    file = config_path_from(path) if search else path
    data: dict[str, JsonValue] = {}
    origin = "environment and defaults"
    if file is not None:
        if not file.is_file():
            raise ConfigError(f"Config file {file} does not exist — pass --config PATH or set HEARTH_CONFIG.")
        try:
            loaded: JsonValue = yaml.safe_load(file.read_text(encoding="utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            raise ConfigError(f"Config file {file} is not valid YAML: {exc}") from exc
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"Config file {file} must hold a mapping of sections at the top level.")
        data = loaded
        origin = str(file)
        _resolve_relative_paths(data, file.parent.resolve())
    # The file's sections are checked by Settings' own validation, not by their Python types; the
    # constructor (not model_validate) is what also reads the environment.
    build: Callable[..., Settings] = Settings
    try:
        settings = build(**data)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc, origin)) from exc
    _check_source_options(settings, origin)
    return settings


def _check_source_options(settings: Settings, origin: str) -> None:
    """Each source's connector-specific options, checked now rather than at the first index."""
    from core.retrieval.connectors import validated_options  # connectors import this module's sections

    for index, spec in enumerate(settings.sources):
        try:
            validated_options(spec)
        except ConfigError as exc:
            where = _env_origin(("sources", index)) or origin
            raise ConfigError(f"Invalid configuration ({where}):\n  sources.{index}: {exc}") from exc


def _env_origin(loc: tuple[int | str, ...]) -> str | None:
    """The environment variable that set the value at ``loc`` (or a section above it), if one did."""
    names = {name.upper() for name in os.environ}
    parts = [str(p) for p in loc]
    for end in range(len(parts), 0, -1):
        name = "HEARTH_" + "__".join(parts[:end]).upper()
        if name in names:
            return f"environment variable {name}"
    return None


_PATH_KEYS = {"path", "model_path", "dir", "home"}


def _resolve_relative_paths(node: JsonValue, base: Path) -> None:
    """Relative file paths in hearth.yaml are relative to the file, not the current directory."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in _PATH_KEYS and isinstance(value, str) and value and not value.startswith(("/", "~")):
                node[key] = str(base / value)
            else:
                _resolve_relative_paths(value, base)
    elif isinstance(node, list):
        for item in node:
            _resolve_relative_paths(item, base)
