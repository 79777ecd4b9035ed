"""Answers the bot posted and the 👍/👎 people gave them, in the state database."""

from __future__ import annotations

import time
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from core.api import FEEDBACK_VOTES, Database, metadata


def _ids(*, per_user: bool) -> tuple[sa.Column[str], ...]:
    """The answer, the person and the question, typed alike in both tables (a vote is one per person)."""
    return (
        sa.Column("answer_id", sa.String(64), primary_key=True),
        sa.Column("user_id", sa.String(64), primary_key=per_user, nullable=False),
        sa.Column("question_id", sa.String(255), nullable=False),
    )


slack_answers = sa.Table(
    "slack_answers",
    metadata,
    *_ids(per_user=False),
    sa.Column("channel", sa.String(64), nullable=False),
    sa.Column("message_ts", sa.String(32), nullable=False),  # the answer's first message
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("question", sa.Text, nullable=False),
    sa.Column("answer", sa.Text, nullable=False),
    sa.Column("model", sa.String(255), nullable=False),
    sa.Column("backend", sa.String(16), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)

slack_feedback = sa.Table(
    "slack_feedback",
    metadata,
    *_ids(per_user=True),
    sa.Column("vote", sa.Integer, nullable=False),  # +1 or -1
    sa.Column("at", sa.Float, nullable=False),
)


@dataclass(frozen=True)
class AnswerRecord:
    """One answer as posted to Slack."""

    answer_id: str
    question_id: str
    user_id: str
    channel: str
    message_ts: str
    kind: str
    question: str
    answer: str
    model: str
    backend: str


@dataclass(frozen=True)
class RatedAnswer:
    """One person's vote on one answer, with what was asked and answered."""

    at: float
    vote: int
    user_id: str
    asker: str
    channel: str
    kind: str
    question: str
    answer: str
    model: str
    backend: str
    answer_id: str


class FeedbackStore:
    """Records answers and votes; a person's later vote on the same answer replaces the earlier one."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def record_answer(self, record: AnswerRecord) -> None:
        """Store a posted answer (idempotent by answer id)."""
        await self.db.ensure([slack_answers])
        values = {**record.__dict__, "created_at": time.time()}

        def upsert(conn: Connection) -> None:
            conn.execute(slack_answers.delete().where(slack_answers.c.answer_id == record.answer_id))
            conn.execute(slack_answers.insert().values(**values))

        await self.db.run(upsert)

    async def vote(self, answer_id: str, user_id: str, vote: int) -> str | None:
        """Store ``user_id``'s vote (+1/-1); return the question id, or None for an unknown answer."""
        if vote not in (1, -1):
            raise ValueError("vote must be +1 or -1")
        await self.db.ensure([slack_answers, slack_feedback])

        def upsert(conn: Connection) -> str | None:
            question_id = conn.execute(
                sa.select(slack_answers.c.question_id).where(slack_answers.c.answer_id == answer_id)
            ).scalar_one_or_none()
            if question_id is None:
                return None
            conn.execute(
                slack_feedback.delete().where(
                    (slack_feedback.c.answer_id == answer_id) & (slack_feedback.c.user_id == user_id)
                )
            )
            conn.execute(
                slack_feedback.insert().values(
                    answer_id=answer_id, user_id=user_id, question_id=question_id, vote=vote, at=time.time()
                )
            )
            return str(question_id)

        question = await self.db.run(upsert)
        if question is not None:
            FEEDBACK_VOTES.labels(surface="slack", vote="up" if vote > 0 else "down").inc()
        return question

    async def rated(
        self, *, since: float | None = None, vote: int | None = None, limit: int | None = None
    ) -> list[RatedAnswer]:
        """Votes joined with the answers they rate, newest first (``vote``: only +1 or only -1)."""
        await self.db.ensure([slack_answers, slack_feedback])
        a, f = slack_answers.c, slack_feedback.c

        def read(conn: Connection) -> list[RatedAnswer]:
            columns: list[sa.ColumnElement[object]] = [f.at, f.vote, f.user_id, a.user_id.label("asker")]
            columns += [a.channel, a.kind, a.question, a.answer, a.model, a.backend, a.answer_id]
            query = (
                sa.select(*columns)
                .select_from(slack_feedback.join(slack_answers, f.answer_id == a.answer_id))
                .order_by(f.at.desc(), f.user_id)
            )
            if since is not None:
                query = query.where(f.at >= since)
            if vote is not None:
                query = query.where(f.vote == vote)
            if limit is not None:
                query = query.limit(limit)
            return [RatedAnswer(**row) for row in conn.execute(query).mappings()]

        return await self.db.run(read)

    async def votes(self, answer_id: str) -> dict[str, int]:
        """user id -> vote for one answer."""
        await self.db.ensure([slack_feedback])

        def read(conn: Connection) -> dict[str, int]:
            rows = conn.execute(
                sa.select(slack_feedback.c.user_id, slack_feedback.c.vote).where(
                    slack_feedback.c.answer_id == answer_id
                )
            )
            return {str(u): int(v) for u, v in rows}

        return await self.db.run(read)

    async def answer(self, answer_id: str) -> AnswerRecord | None:
        """The stored answer, if any."""
        await self.db.ensure([slack_answers])

        def read(conn: Connection) -> AnswerRecord | None:
            row = (
                conn.execute(sa.select(slack_answers).where(slack_answers.c.answer_id == answer_id))
                .mappings()
                .first()
            )
            if row is None:
                return None
            return AnswerRecord(**{k: row[k] for k in AnswerRecord.__dataclass_fields__})

        return await self.db.run(read)
