"""What connectors yield: a Document to index, or a Skipped item with the reason it was left out."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime


def content_hash(text: str) -> str:
    """A stable fingerprint of a document's text (sha256, hex)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Document:
    """One readable document from a source.

    ``id`` is stable across runs (``source:relative/path`` or the URL) so sync can tell an edit
    from a new document; ``acl`` lists the tokens allowed to read it.
    """

    id: str
    uri: str
    title: str
    text: str
    acl: tuple[str, ...]
    updated_at: datetime
    source: str
    content_hash: str = ""
    kind: str = "text"  # markdown | rst | html | pdf | code | text: picks the chunker
    meta: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.content_hash:
            object.__setattr__(self, "content_hash", content_hash(self.text))
        if self.updated_at.tzinfo is None:
            object.__setattr__(self, "updated_at", self.updated_at.replace(tzinfo=UTC))


@dataclass(frozen=True)
class Skipped:
    """An item a connector could not index, and why (shown in the index summary)."""

    uri: str
    reason: str
    keep_id: str = ""  # set when the previous version of this doc stays indexed (e.g. a site is down)


@dataclass(frozen=True)
class Unchanged:
    """An item the connector knows is unchanged since the last sync (ETag, commit) without reading it."""

    id: str
