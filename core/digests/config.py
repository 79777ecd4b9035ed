"""Digest specifications as written in hearth.yaml."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from core.section import Section


class DigestSpec(Section):
    """One scheduled digest."""

    name: str = Field(description="Unique digest name.")
    schedule: str = Field(description="Cron expression, e.g. '0 9 * * MON'.")
    timezone: str = Field("UTC", description="IANA time zone the cron is read in.")
    inputs: dict[str, Any] = Field(default_factory=dict, description="docs / tables / chat inputs.")
    template: str = Field("digest_weekly", description="Prompt template that writes the digest.")
    post_to: list[dict[str, str]] = Field(default_factory=list, description="Destinations, e.g. {slack: '#eng'}.")
    on_no_changes: str = Field("post", description="'post' a short note or 'skip' when nothing changed.")
    owner: str | None = Field(None, description="Who is told when a run fails.")
