"""The connector registry: where documents come from, by name.

Built-in connectors live in the top-level ``connectors`` package, which registers them when it
is imported; this module imports it lazily (core never depends on it at import time). Third-party
connectors register through the ``hearth.connectors`` entry point group::

    from core.retrieval.connectors import register

    class JiraConnector:
        Options = JiraOptions                    # pydantic model, extra="forbid"
        def __init__(self, source: SourceInfo, options: JiraOptions) -> None: ...
        def scan(self, ctx: ScanContext) -> AsyncIterator[Document | Skipped | Unchanged]: ...

    register("jira", JiraConnector)
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, Protocol

from pydantic import BaseModel, ValidationError

from core.errors import ConfigError
from core.retrieval.config import SourceSpec
from core.retrieval.documents import Document, Skipped, Unchanged

log = logging.getLogger(__name__)

Item = Document | Skipped | Unchanged


@dataclass(frozen=True)
class SourceInfo:
    """What every connector knows about its source besides its own options."""

    name: str
    acl: tuple[str, ...]
    max_file_bytes: int


@dataclass
class ScanContext:
    """Memory from the previous complete sync, and the place to leave memory for the next one.

    ``known`` maps doc id -> content hash of what is indexed now ('' while a doc is half-done);
    a connector may yield :class:`Unchanged` only for ids in ``known``. ``cursor`` is what the
    connector left last time (a commit, ETags); it rewrites it and it is saved when the run completes.
    """

    known: dict[str, str] = field(default_factory=dict)
    cursor: dict[str, Any] = field(default_factory=dict)


class Connector(Protocol):
    """A source of documents."""

    def scan(self, ctx: ScanContext) -> AsyncIterator[Item]:
        """Yield every document of the source (or Unchanged/Skipped markers)."""
        ...


# A connector class: a constructor taking the source info and validated options, and an ``Options``
# attribute holding its pydantic options model.
ConnectorFactory = Callable[[SourceInfo, Any], Connector]


_REGISTRY: dict[str, ConnectorFactory] = {}
_loaded = False


def register(name: str, factory: ConnectorFactory) -> None:
    """Make a connector available under ``name`` (the ``type`` of a source in hearth.yaml)."""
    _REGISTRY[name] = factory


def _load() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    importlib.import_module("connectors")  # registers files, git, http
    for ep in entry_points(group="hearth.connectors"):
        try:
            register(ep.name, ep.load())
        except Exception:  # a broken plugin must not take the built-ins down
            log.exception("could not load connector plugin %s", ep.name)


def available() -> list[str]:
    """Names of every registered connector."""
    _load()
    return sorted(_REGISTRY)


def get(name: str) -> ConnectorFactory:
    """The connector registered as ``name``."""
    _load()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ConfigError(f"Unknown connector '{name}'; available: {', '.join(available())}") from None


def build(spec: SourceSpec, max_file_bytes: int) -> Connector:
    """The connector for ``spec`` with its options validated (a typo names the key)."""
    factory = get(spec.type)
    model: type[BaseModel] = getattr(factory, "Options", BaseModel)
    try:
        options = model.model_validate(spec.options())
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(options)'}: "
            + ("unknown key" if e["type"] == "extra_forbidden" else e["msg"])
            for e in exc.errors()
        )
        raise ConfigError(f"Source '{spec.name}' (type {spec.type}): {problems}") from exc
    return factory(SourceInfo(spec.name, tuple(spec.acl), max_file_bytes), options)
