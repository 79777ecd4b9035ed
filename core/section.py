"""Base class for every settings section: unknown keys are errors, not silent defaults."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    """A block of ``hearth.yaml``; a misspelled key fails validation and is named in the error."""

    model_config = ConfigDict(extra="forbid", validate_default=True)
