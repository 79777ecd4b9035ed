"""Digest specifications as written in hearth.yaml (or created from chat), validated on load.

::

    digests:
      - name: eng-weekly
        schedule: "0 9 * * MON"
        timezone: Asia/Shanghai
        inputs:
          docs: {sources: [handbook], changed_since_last_run: true}
          tables: [{source: tickets, sql: "SELECT team, count(*) AS n FROM tickets GROUP BY team"}]
        template: digest_weekly
        post_to: [{slack: "#eng"}, {dingtalk: eng-robot}]

Field checks (cron, time zone, destination shape) run when the spec is parsed; references to
other sections (doc sources, table sources, DingTalk webhooks) are checked by
:func:`check_references`, which the Settings tree calls once everything is loaded. This module
does not import the Settings tree (it is part of it): it reads the sections it names through
the :class:`References` protocol, which ``core.config.Settings`` satisfies.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Literal, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator

from core.section import Section

if TYPE_CHECKING:
    from apscheduler.triggers.cron import CronTrigger

# A spec as data (chat commands, the state database); pydantic reads it, nothing else looks inside.
SpecData = dict[str, object]
SURFACES = ("slack", "dingtalk")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
# A Slack destination: '#channel-name', or a channel / user / DM id (C…, G…, D…, U…, W…).
_SLACK_DEST = re.compile(r"^(#[a-z0-9][a-z0-9_-]{0,79}|[CGDUW][A-Z0-9]{6,20})$")


def cron_trigger(schedule: str, timezone: str) -> CronTrigger:
    """APScheduler's trigger for a crontab line; ValueError with a readable reason when it is invalid."""
    from apscheduler.triggers.cron import CronTrigger

    fields = schedule.split()
    if len(fields) != 5:
        raise ValueError(
            f"invalid cron '{schedule}': it needs 5 fields (minute hour day month weekday), got {len(fields)}"
        )
    if re.search(r"\d", fields[4]):
        # APScheduler 3 counts weekdays from Monday=0 while crontab uses Sunday=0: a numeric
        # weekday would silently fire on the wrong day, so only names are accepted.
        raise ValueError(
            f"invalid cron '{schedule}': write the weekday with names (MON, MON-FRI, SAT,SUN), not numbers"
        )
    try:
        return CronTrigger.from_crontab(schedule, timezone=ZoneInfo(timezone))
    except (ValueError, KeyError) as exc:
        raise ValueError(f"invalid cron '{schedule}': {exc}") from None


class DocsInput(Section):
    """Documents that changed in the digest's period."""

    sources: list[str] = Field(
        default_factory=list, description="Document source names (empty: all sources)."
    )
    changed_since_last_run: bool = Field(
        True,
        description="Docs changed since the last successful run; false: since the previous scheduled time.",
    )
    max_items: int = Field(20, ge=1, le=200, description="Most changed docs listed in one digest.")


class TableInput(Section):
    """One table query whose result goes into the digest."""

    source: str = Field(description="Table source name (from 'tables').")
    sql: str = Field(min_length=1, description="A SELECT; it passes the same SQL guard as /data questions.")
    title: str | None = Field(None, description="Heading shown above the result (default: the source name).")


class ChatInput(Section):
    """Chat activity to summarise (used when a chat-history provider is installed)."""

    channels: list[str] = Field(default_factory=list, description="Channels whose activity is summarised.")


class DigestInputs(Section):
    """What a digest is made of."""

    docs: DocsInput | None = Field(None, description="Changed documents.")
    tables: list[TableInput] = Field(default_factory=list, description="Table queries.")
    chat: ChatInput | None = Field(None, description="Chat activity.")


class DigestSpec(Section):
    """One scheduled digest."""

    name: str = Field(description="Unique digest name (letters, digits, '-', '_', '.').")
    schedule: str = Field(description="Cron expression, e.g. '0 9 * * MON' (weekdays by name).")
    timezone: str = Field("UTC", description="IANA time zone the cron is read in.")
    inputs: DigestInputs = Field(default_factory=DigestInputs, description="docs / tables / chat inputs.")
    template: str = Field("digest_weekly", description="Prompt template that writes the digest.")
    post_to: list[dict[str, str]] = Field(
        min_length=1, description="Destinations, each {slack: '#channel'} or {dingtalk: webhook-name}."
    )
    on_no_changes: Literal["post", "skip"] = Field(
        "post", description="'post' a short note or 'skip' when nothing changed."
    )
    owner: str | None = Field(
        None, description="Told when a run fails: 'slack:U123ABC' (a DM) or 'dingtalk:webhook-name'."
    )

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(f"'{value}' is not a valid digest name: use letters, digits, '-', '_' or '.'")
        return value

    @field_validator("timezone")
    @classmethod
    def _check_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone '{value}'; use an IANA name such as Europe/Berlin or UTC"
            ) from None
        return value

    @field_validator("post_to")
    @classmethod
    def _check_post_to(cls, value: list[dict[str, str]]) -> list[dict[str, str]]:
        for i, entry in enumerate(value):
            keys = list(entry)
            if len(keys) != 1 or keys[0] not in SURFACES:
                raise ValueError(
                    f"post_to[{i}] must have exactly one of 'slack' or 'dingtalk' "
                    f"(got {', '.join(keys) or 'nothing'})"
                )
            surface, dest = keys[0], entry[keys[0]]
            if surface == "slack" and not _SLACK_DEST.match(dest):
                raise ValueError(
                    f"post_to[{i}].slack: '{dest}' is not a Slack channel; "
                    "write '#channel-name' or a channel id"
                )
            if not dest.strip():
                raise ValueError(f"post_to[{i}].{surface} is empty")
        return value

    @field_validator("owner")
    @classmethod
    def _check_owner(cls, value: str | None) -> str | None:
        if value is None:
            return value
        surface, _, dest = value.partition(":")
        if surface not in SURFACES or not dest:
            raise ValueError(
                f"owner '{value}' must be 'slack:<user or channel id>' or 'dingtalk:<webhook-name>'"
            )
        return value

    @field_validator("schedule")
    @classmethod
    def _check_schedule(cls, value: str) -> str:
        # Cron syntax does not depend on the time zone, so UTC is enough to validate it here.
        cron_trigger(value, "UTC")
        return value

    @property
    def destinations(self) -> list[tuple[str, str]]:
        """(surface, destination) pairs, in order."""
        return [next(iter(entry.items())) for entry in self.post_to]

    def trigger(self) -> CronTrigger:
        """The APScheduler trigger for this spec."""
        return cron_trigger(self.schedule, self.timezone)


class _Named(Protocol):
    @property
    def name(self) -> str: ...


class _Webhooks(Protocol):
    @property
    def webhooks(self) -> Mapping[str, object]: ...


class References(Protocol):
    """The sections of the Settings tree a digest spec may name."""

    @property
    def sources(self) -> Sequence[_Named]:
        """Document sources."""
        ...

    @property
    def tables(self) -> Sequence[_Named]:
        """Table sources."""
        ...

    @property
    def dingtalk(self) -> _Webhooks:
        """DingTalk, with its named webhooks."""
        ...


class Configured(References, Protocol):
    """The Settings tree as :func:`check_all` reads it."""

    @property
    def digests(self) -> Sequence[DigestSpec]:
        """The digests of hearth.yaml."""
        ...


def check_references(spec: DigestSpec, settings: References, where: str) -> None:
    """Raise ValueError naming the field of ``where`` that names a missing source or webhook."""
    doc_sources = [s.name for s in settings.sources]
    table_sources = [t.name for t in settings.tables]
    docs = spec.inputs.docs
    if docs is not None:
        for j, name in enumerate(docs.sources):
            if name not in doc_sources:
                raise ValueError(
                    f"{where}.inputs.docs.sources[{j}]: unknown source '{name}'; available: "
                    f"{', '.join(doc_sources) or '(none — add one under sources)'}"
                )
    for j, table in enumerate(spec.inputs.tables):
        if table.source not in table_sources:
            raise ValueError(
                f"{where}.inputs.tables[{j}].source: unknown table source '{table.source}'; available: "
                f"{', '.join(table_sources) or '(none — add one under tables)'}"
            )
    webhooks = sorted(settings.dingtalk.webhooks)
    targets = [*spec.destinations]
    owner = spec.owner.partition(":") if spec.owner else None
    for j, (surface, dest) in enumerate(targets):
        if surface == "dingtalk" and dest not in webhooks:
            raise ValueError(
                f"{where}.post_to[{j}].dingtalk: unknown webhook '{dest}'; available: "
                f"{', '.join(webhooks) or '(none — add one under dingtalk.webhooks)'}"
            )
    if owner is not None and owner[0] == "dingtalk" and owner[2] not in webhooks:
        raise ValueError(
            f"{where}.owner: unknown DingTalk webhook '{owner[2]}'; "
            f"available: {', '.join(webhooks) or '(none)'}"
        )


def check_all(settings: Configured) -> None:
    """Check every configured digest's references (called by the Settings validator)."""
    for i, spec in enumerate(settings.digests):
        check_references(spec, settings, f"digests[{i}]")


def spec_from_data(data: SpecData, settings: References, where: str = "digest") -> DigestSpec:
    """Parse and fully check a spec that did not come from hearth.yaml (chat, the state DB)."""
    spec = DigestSpec.model_validate(data)
    check_references(spec, settings, where)
    return spec
