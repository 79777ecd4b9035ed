"""Settings for table sources (CSV, Parquet, SQLite, PostgreSQL), and what table code reads of the tree.

The Settings tree (``core.config.Settings``) is built from these sections, so the table service
and the sources take it through :class:`TableSourceConfigured` and :class:`TablesConfigured`,
protocols it satisfies, instead of importing it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Protocol

from pydantic import Field, SecretStr, model_validator

from core.llm.config import LLMSettings
from core.prompts.config import PromptSettings
from core.registry import registered_name
from core.section import Section

# Built-in types read from a file; a plugin's source may take a path or a url.
_FILE_TYPES = frozenset({"csv", "parquet", "sqlite"})


class TableSourceSpec(Section):
    """One table source."""

    name: str = Field(description="Unique source name used by --source and /data.")
    type: Annotated[str, registered_name("table source type", "hearth.table_sources")] = Field(
        description="Kind of source: csv, parquet, sqlite, postgres, or a plugin's name from the "
        "hearth.table_sources entry points.",
        examples=["csv"],
    )
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
        if self.type in _FILE_TYPES and self.path is None:
            raise ValueError(f"table source '{self.name}' of type {self.type} needs 'path'")
        if self.path is None and self.url is None:
            raise ValueError(f"table source '{self.name}' of type {self.type} needs 'path' or 'url'")
        return self


class TablesSettings(Section):
    """Limits applied to every table query."""

    max_rows: int = Field(
        1000, ge=1, description="LIMIT added to queries that have none; results are capped here."
    )
    max_result_bytes: int = Field(
        8 << 20,
        ge=1024,
        description="Bytes a result may take (about its text size); fetching stops there, and "
        "SQLite refuses to build a longer value.",
    )
    duckdb_memory_mb: int = Field(
        1024, ge=64, description="Memory DuckDB may use for one CSV/Parquet source (its memory_limit)."
    )
    duckdb_threads: int = Field(2, ge=1, le=256, description="Threads DuckDB may use per CSV/Parquet source.")
    timeout_s: float = Field(10.0, gt=0, description="Wall-clock limit per query.")
    chat_rows: int = Field(20, ge=1, description="Rows shown inline in chat before pointing to the CSV file.")
    results_keep_days: float = Field(
        7.0, gt=0, description="CSV files and charts under <home>/results older than this are deleted."
    )
    results_max_mb: float = Field(
        500.0, gt=0, description="Past this total size the oldest result files are deleted first."
    )
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


class TableSourceConfigured(Protocol):
    """What a table source reads of the settings: the limits, and where under Hearth's home to keep files."""

    @property
    def table_limits(self) -> TablesSettings:
        """The ``table_limits`` section."""
        ...

    def path(self, *parts: str) -> Path:
        """A path under Hearth's data directory."""
        ...


class TablesConfigured(TableSourceConfigured, Protocol):
    """What the table service reads: the sources, and the model and prompts it writes SQL with."""

    @property
    def tables(self) -> Sequence[TableSourceSpec]:
        """The configured table sources."""
        ...

    @property
    def llm(self) -> LLMSettings:
        """The ``llm`` section (context size, token limits, seed)."""
        ...

    @property
    def prompts(self) -> PromptSettings:
        """The ``prompts`` section (a team's own templates)."""
        ...
