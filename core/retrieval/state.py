"""Sync state in the state database: what is indexed per document, and per source when it last synced."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from core.db import Database, metadata
from core.jsontypes import JsonObject, JsonValue

docs_table = sa.Table(
    "retrieval_docs",
    metadata,
    sa.Column("source", sa.String(200), primary_key=True),
    sa.Column("doc_id", sa.String(1000), primary_key=True),
    sa.Column("uri", sa.Text, nullable=False),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("content_hash", sa.String(64), nullable=False),  # '' while the doc is being (re)written
    sa.Column("signature", sa.String(200), nullable=False),
    sa.Column("chunks", sa.Integer, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Column("indexed_at", sa.Float, nullable=False),
)

sources_table = sa.Table(
    "retrieval_sources",
    metadata,
    sa.Column("source", sa.String(200), primary_key=True),
    sa.Column("last_sync", sa.Float, nullable=False),
    sa.Column("cursor", sa.Text, nullable=False),
    sa.Column("summary", sa.Text, nullable=False),
)

TABLES = [docs_table, sources_table]


@dataclass(frozen=True)
class DocState:
    """One indexed document as the state database remembers it."""

    source: str
    doc_id: str
    uri: str
    title: str
    content_hash: str
    signature: str
    chunks: int
    updated_at: float
    indexed_at: float


class SyncState:
    """Reads and writes the sync tables; every write is its own transaction."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def source_names(self) -> list[str]:
        """Every source the state database knows (configured or not)."""
        await self.db.ensure(TABLES)

        def read(conn: Connection) -> list[str]:
            names = {r[0] for r in conn.execute(sa.select(docs_table.c.source).distinct())}
            names |= {r[0] for r in conn.execute(sa.select(sources_table.c.source))}
            return sorted(names)

        return await self.db.run(read)

    async def docs(self, source: str) -> dict[str, DocState]:
        """Every document recorded for ``source``."""
        await self.db.ensure(TABLES)

        def read(conn: Connection) -> dict[str, DocState]:
            rows = conn.execute(sa.select(docs_table).where(docs_table.c.source == source))
            return {r.doc_id: DocState(**r._mapping) for r in rows}

        return await self.db.run(read)

    async def put_docs(self, rows: list[DocState]) -> None:
        """Insert or replace document rows."""
        if not rows:
            return

        def write(conn: Connection) -> None:
            for row in rows:
                conn.execute(
                    docs_table.delete().where(
                        (docs_table.c.source == row.source) & (docs_table.c.doc_id == row.doc_id)
                    )
                )
                conn.execute(docs_table.insert().values(**row.__dict__))

        await self.db.run(write)

    async def delete_doc(self, source: str, doc_id: str) -> None:
        """Forget one document."""

        def write(conn: Connection) -> None:
            conn.execute(
                docs_table.delete().where((docs_table.c.source == source) & (docs_table.c.doc_id == doc_id))
            )

        await self.db.run(write)

    async def source(self, source: str) -> tuple[float | None, JsonObject, JsonObject]:
        """(last sync time, connector cursor, last summary) of a source."""
        await self.db.ensure(TABLES)

        def read(conn: Connection) -> tuple[float | None, JsonObject, JsonObject]:
            row = conn.execute(sa.select(sources_table).where(sources_table.c.source == source)).first()
            if row is None:
                return None, {}, {}
            return row.last_sync, _object(row.cursor), _object(row.summary)

        return await self.db.run(read)

    async def finish_source(self, source: str, cursor: JsonObject, summary: JsonObject) -> None:
        """Record a completed sync (only then is the connector's cursor trusted next time)."""

        def write(conn: Connection) -> None:
            conn.execute(sources_table.delete().where(sources_table.c.source == source))
            conn.execute(
                sources_table.insert().values(
                    source=source,
                    last_sync=time.time(),
                    cursor=json.dumps(cursor),
                    summary=json.dumps(summary),
                )
            )

        await self.db.run(write)

    async def forget(self, sources: list[str] | None = None) -> None:
        """Drop the state of some (or all) sources, e.g. before a rebuild."""
        await self.db.ensure(TABLES)

        def write(conn: Connection) -> None:
            for table in (docs_table, sources_table):
                stmt = table.delete()
                if sources is not None:
                    stmt = stmt.where(table.c.source.in_(sources))
                conn.execute(stmt)

        await self.db.run(write)

    async def changed_since(self, sources: list[str], since: float) -> list[DocState]:
        """Documents of ``sources`` whose content changed at or after ``since`` (newest first)."""
        await self.db.ensure(TABLES)

        def read(conn: Connection) -> list[DocState]:
            stmt = (
                sa.select(docs_table)
                .where(docs_table.c.source.in_(sources))
                .where(docs_table.c.content_hash != "")
                .where(sa.or_(docs_table.c.updated_at >= since, docs_table.c.indexed_at >= since))
                .order_by(docs_table.c.updated_at.desc())
            )
            return [DocState(**r._mapping) for r in conn.execute(stmt)]

        return await self.db.run(read)


def _object(text: str) -> JsonObject:
    """A JSON object column (an older or foreign value that is not an object reads as empty)."""
    value: JsonValue = json.loads(text)
    return value if isinstance(value, dict) else {}
