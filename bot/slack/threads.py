"""The threads Hearth has answered in, so that a reply there is a follow-up even without @Hearth.

::

    threads = AnsweredThreads(db)
    await threads.remember("C1", "1700000000.000100")    # after an answer is posted in that thread
    await threads.answered("C1", "1700000000.000100")    # True: answer replies there unmentioned
"""

from __future__ import annotations

import time

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from core.api import Database, metadata

slack_threads = sa.Table(
    "slack_threads",
    metadata,
    sa.Column("channel", sa.String(64), primary_key=True),
    sa.Column("thread_ts", sa.String(32), primary_key=True),
    sa.Column("answered_at", sa.Float, nullable=False),
)


class AnsweredThreads:
    """Channel threads with at least one answer of Hearth's in them, in the state database."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def remember(self, channel: str, thread_ts: str) -> None:
        """Hearth answered in ``thread_ts`` of ``channel``."""
        await self.db.ensure([slack_threads])

        def put(conn: Connection) -> None:
            try:
                with conn.begin_nested():
                    conn.execute(
                        slack_threads.insert().values(
                            channel=channel, thread_ts=thread_ts, answered_at=time.time()
                        )
                    )
            except IntegrityError:
                pass  # known already

        await self.db.run(put)

    async def answered(self, channel: str, thread_ts: str) -> bool:
        """Whether Hearth has answered in ``thread_ts`` of ``channel``."""
        await self.db.ensure([slack_threads])
        key = (slack_threads.c.channel == channel) & (slack_threads.c.thread_ts == thread_ts)
        found = await self.db.run(
            lambda conn: conn.execute(sa.select(slack_threads.c.channel).where(key)).first()
        )
        return found is not None
