"""Settings for table sources (CSV, Parquet, SQLite, PostgreSQL)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator

from core.section import Section


class TableSourceSpec(Section):
    """One table source."""

    name: str = Field(description="Unique source name used by --source and /data.")
    type: Literal["csv", "parquet", "sqlite", "postgres"] = Field(description="Kind of source.")
    path: Path | None = Field(None, description="File path for csv, parquet and sqlite sources.")
    url: SecretStr | None = Field(
        None, description="Connection URL for postgres sources (may hold a password)."
    )
    description: str = Field("", description="What this data is; helps the model pick tables.")
    acl: list[str] = Field(
        default_factory=lambda: ["public"], description="Tokens allowed to query this source."
    )

    @model_validator(mode="after")
    def _needs_location(self) -> TableSourceSpec:
        if self.type == "postgres" and self.url is None:
            raise ValueError(f"table source '{self.name}' of type postgres needs 'url'")
        if self.type != "postgres" and self.path is None:
            raise ValueError(f"table source '{self.name}' of type {self.type} needs 'path'")
        return self


class TablesSettings(Section):
    """Limits applied to every table query."""

    max_rows: int = Field(
        1000, ge=1, description="LIMIT added to queries that have none; results are capped here."
    )
    timeout_s: float = Field(10.0, gt=0, description="Wall-clock limit per query.")
    chat_rows: int = Field(20, ge=1, description="Rows shown inline in chat before pointing to the CSV file.")
    repairs: int = Field(
        2, ge=0, le=5, description="Times a failing SQL is sent back to the model for repair."
    )
    samples: int = Field(3, ge=0, le=10, description="Example values per text column shown to the model.")
    prompt_tables: int = Field(
        5, ge=1, description="Most tables (the most relevant to the question) put in one prompt."
    )
    catalog_ttl_s: float = Field(
        300.0, ge=0, description="Seconds a source's catalog (tables, columns, counts) is reused."
    )
