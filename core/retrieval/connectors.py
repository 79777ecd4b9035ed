"""What a document connector is, and the registry that finds one by name.

Connectors depend on this module, never the other way: the built-ins in the top-level
``connectors`` package and third-party ones alike register through the ``hearth.connectors``
entry point group (see :mod:`core.registry`)::

    class JiraConnector:
        Options = JiraOptions                    # pydantic model, extra="forbid"
        def __init__(self, source: SourceInfo, options: JiraOptions) -> None: ...
        def scan(self, ctx: ScanContext) -> AsyncIterator[Document | Skipped | Unchanged]: ...

    # pyproject.toml: [project.entry-points."hearth.connectors"]  jira = "hearth_jira:JiraConnector"
    connector = build(SourceSpec(name="tickets", type="jira", ...), max_file_bytes)
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from pydantic import BaseModel, ValidationError

from core.errors import ConfigError
from core.jsontypes import JsonObject
from core.registry import Registry
from core.retrieval.config import SourceSpec
from core.retrieval.documents import Document, Skipped, Unchanged

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
    cursor: JsonObject = field(default_factory=dict)


class Connector(Protocol):
    """A source of documents."""

    def scan(self, ctx: ScanContext) -> AsyncIterator[Item]:
        """Yield every document of the source (or Unchanged/Skipped markers)."""
        ...


# A connector class: a constructor taking the source info and its validated options, and an ``Options``
# attribute holding its pydantic options model (each connector has its own, so the type is open here).
ConnectorFactory = Callable[[SourceInfo, Any], Connector]


CONNECTORS: Registry[ConnectorFactory] = Registry("connector", "hearth.connectors")


def validated_options(spec: SourceSpec) -> tuple[ConnectorFactory, BaseModel]:
    """The connector named by ``spec`` and its options, validated (a typo names the key).

    Called when the configuration loads, so a bad source entry fails ``config show`` and ``serve``,
    not only ``index``.
    """
    factory = CONNECTORS.get(spec.type)
    model: type[BaseModel] = getattr(factory, "Options", BaseModel)
    try:
        return factory, model.model_validate(spec.options())
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(options)'}: "
            + ("unknown key" if e["type"] == "extra_forbidden" else e["msg"])
            for e in exc.errors()
        )
        raise ConfigError(f"Source '{spec.name}' (type {spec.type}): {problems}") from exc


def build(spec: SourceSpec, max_file_bytes: int) -> Connector:
    """The connector for ``spec`` with its options validated."""
    factory, options = validated_options(spec)
    return factory(SourceInfo(spec.name, tuple(spec.acl), max_file_bytes), options)
