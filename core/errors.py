"""One error tree for the whole engine.

::

    HearthError
    ├── ConfigError                 bad or missing configuration (names the key)
    ├── InputError                  a request the engine refuses (empty, too large, binary…)
    ├── BackendError                a model backend failed
    │   ├── BackendUnavailable      cannot be reached / cannot load / circuit open
    │   ├── BackendTimeout          no first token in time, or the call hung
    │   ├── QueueFull               the local model's queue is at its bound
    │   └── AllBackendsFailed       local and remote both failed (carries both reasons)
    ├── PromptError                 unknown template, missing input, bad header
    ├── RetrievalError              the vector store or embedder failed
    ├── ConnectorError              a source could not be read
    ├── TableError                  table catalog or query failure
    │   └── SQLRejected             the SQL guard refused a statement
    ├── SandboxError                the test sandbox could not run
    └── DigestError                 a digest spec or run failed

``str(exc)`` is always a sentence a person can act on; the cause is chained with
``raise ... from exc`` so the log keeps the detail. An error a surface words in its own language
carries a refusal ``key`` (a ``core.refusals.Reason`` value) and the ``values`` that sentence
needs: ``InputError("...", key="empty")``; ``core.refusals.refusal_for`` reads them.
"""

from __future__ import annotations


class HearthError(Exception):
    """Base of every error Hearth raises on purpose."""

    def __init__(self, message: str = "", *, key: str | None = None, **values: str | int | float) -> None:
        super().__init__(message)
        self.key = key
        self.values = values


class ConfigError(HearthError):
    """Configuration is invalid or missing; the message names the key."""


class InputError(HearthError):
    """The request itself is unacceptable (empty, too large, binary, malformed)."""


class BackendError(HearthError):
    """A language-model backend failed."""


class BackendUnavailable(BackendError):
    """The backend cannot serve at all right now (load failure, refused, circuit open)."""


class BackendTimeout(BackendError):
    """The backend did not answer (or produce a first token) within its deadline."""


class QueueFull(BackendError):
    """The local model's request queue is at its configured bound."""


class AllBackendsFailed(BackendError):
    """Every configured backend failed; ``reasons`` maps backend label to its error."""

    def __init__(self, message: str, reasons: dict[str, BaseException] | None = None) -> None:
        super().__init__(message)
        self.reasons = reasons or {}


class PromptError(HearthError):
    """A prompt template is unknown, malformed, or missing an input."""


class RetrievalError(HearthError):
    """The embedder or the vector store failed."""


class ConnectorError(HearthError):
    """A document or table source could not be read."""


class TableError(HearthError):
    """A table catalog or query operation failed."""


class SQLRejected(TableError):
    """The SQL guard refused a statement; the message is the one-sentence reason."""


class SandboxError(HearthError):
    """The code sandbox could not run the requested command."""


class DigestError(HearthError):
    """A digest spec is invalid or a digest run failed."""
