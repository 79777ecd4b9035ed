"""Plugins by name: one registry shape for connectors, embedders, table sources and LLM backends.

Built-ins and third-party packages register the same way, through an entry point group
(simonw/llm does the same for its default plugins). A package adds, in its ``pyproject.toml``::

    [project.entry-points."hearth.connectors"]
    jira = "hearth_jira:JiraConnector"

and ``hearth.yaml`` can then say ``type: jira``. Entry points load when their name is first asked
for, so a driver nobody configured is never imported. Code (a test's fake, an embedding
application) registers directly and wins over an entry point of the same name::

    CONNECTORS.register("jira", JiraConnector)
    factory = CONNECTORS.get("jira")      # unknown: ConfigError naming the known ones

A settings field that names a plugin is a ``str`` checked against the group when ``hearth.yaml``
loads, so a plugin is nameable there the moment it is installed or registered::

    type: Annotated[str, registered_name("connector", "hearth.connectors")] = Field(...)
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from importlib.metadata import EntryPoint, entry_points
from typing import Generic, TypeVar

from pydantic import AfterValidator
from pydantic_core import PydanticCustomError

from core.errors import ConfigError

log = logging.getLogger(__name__)

T = TypeVar("T")

# The names each registry knows, by entry point group (the settings check names without importing
# the modules that define the registries, which import the settings).
_NAMES: dict[str, Callable[[], list[str]]] = {}


class Registry(Generic[T]):
    """Factories of one kind (``kind`` names it in errors), by name, fed by the entry point ``group``."""

    def __init__(self, kind: str, group: str) -> None:
        self.kind = kind
        self.group = group
        self._factories: dict[str, T] = {}
        self._entry_points: dict[str, EntryPoint] | None = None
        _NAMES[group] = self.names

    def register(self, name: str, factory: T) -> None:
        """Make ``factory`` available as ``name`` (replacing an entry point or earlier registration)."""
        self._factories[name] = factory

    def unregister(self, name: str) -> None:
        """Forget a registration made with :meth:`register` (entry points stay)."""
        self._factories.pop(name, None)

    @contextmanager
    def registered(self, name: str, factory: T) -> Iterator[T]:
        """Register ``factory`` as ``name`` for the ``with`` block, then put back what was there."""
        before = self._factories.get(name)
        self.register(name, factory)
        try:
            yield factory
        finally:
            if before is None:
                self.unregister(name)
            else:
                self.register(name, before)

    def names(self) -> list[str]:
        """Every name that :meth:`get` knows, sorted."""
        return sorted({*self._factories, *self._eps()})

    def get(self, name: str) -> T:
        """The factory registered as ``name``; an unknown name fails with the list of known ones."""
        if name in self._factories:
            return self._factories[name]
        ep = self._eps().get(name)
        if ep is None:
            raise ConfigError(
                f"Unknown {self.kind} '{name}'; available: {_available(self.names(), self.group)}"
            )
        try:
            factory: T = ep.load()
        except Exception as exc:  # a broken plugin is a configuration problem, said once, with its cause
            raise ConfigError(
                f"The {self.kind} '{name}' ({ep.value}) could not be loaded: {exc} — "
                "reinstall the package that provides it or choose another."
            ) from exc
        self._factories[name] = factory
        return factory

    def _eps(self) -> dict[str, EntryPoint]:
        if self._entry_points is None:
            self._entry_points = {ep.name: ep for ep in entry_points(group=self.group)}
        return self._entry_points


def _available(known: list[str], group: str) -> str:
    return ", ".join(known) if known else f"none (no '{group}' entry points: is Hearth installed?)"


def names_in(group: str) -> list[str]:
    """Every name the registry of ``group`` knows; its entry points alone until that registry exists."""
    live = _NAMES.get(group)
    return live() if live is not None else _entry_point_names(group)


@functools.cache
def _entry_point_names(group: str) -> list[str]:
    # Installed packages do not change while the process runs; every settings load asks.
    return sorted({ep.name for ep in entry_points(group=group)})


def registered_name(kind: str, group: str, *, exclude: Collection[str] = ()) -> AfterValidator:
    """A pydantic check that a settings value names a plugin of ``group`` (``exclude``: names not meant here).

    The error names what is available; the settings loader puts the key in front of it.
    """

    def check(name: str) -> str:
        known = [n for n in names_in(group) if n not in exclude]
        if name not in known:
            raise PydanticCustomError(
                "unknown_plugin",
                "Unknown {kind} '{name}'; available: {available}",
                {"kind": kind, "name": name, "available": _available(known, group)},
            )
        return name

    return AfterValidator(check)
