"""The ``prompts`` section of hearth.yaml: where a team's own templates are."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from core.section import Section


class PromptSettings(Section):
    """Prompt template overrides."""

    dir: Path | None = Field(None, description="Directory of extra or overriding *.j2 templates.")
