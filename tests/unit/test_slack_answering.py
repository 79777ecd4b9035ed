"""Which messages an answer taking a dead process's claim over adopts (no Slack: the lookup's rules)."""

from __future__ import annotations

from bot.slack.answering import ANSWER_EVENT, CLOCK_SKEW_S, Question, answers_question


async def _nowhere(notice: str) -> None:
    raise AssertionError(notice)


def question(**overrides: object) -> Question:
    fields: dict[str, object] = {
        "kind": "ask",
        "user": "U1",
        "channel": "C1",
        "text": "x",
        "question_id": "command:trig.1",
        "notify": _nowhere,
        "asked_at": 1_800_000_000.0,
    }
    return Question(**(fields | overrides))  # type: ignore[arg-type]


def message(
    ts: str, question_id: str | None = "command:trig.1", event_type: str = ANSWER_EVENT
) -> dict[str, object]:
    msg: dict[str, object] = {"type": "message", "ts": ts, "text": "Thinking…"}
    if question_id is not None:
        msg["metadata"] = {"event_type": event_type, "event_payload": {"question_id": question_id}}
    return msg


def test_a_slash_command_is_looked_for_from_shortly_before_it_was_asked() -> None:
    assert question().lookup_from() == f"{1_800_000_000.0 - CLOCK_SKEW_S:.6f}"
    # A message event is looked for after its own message, whatever this host's clock says.
    assert question(message_ts="1700000000.000100").lookup_from() == "1700000000.000100"


def test_only_this_questions_own_messages_after_the_bound_are_adopted() -> None:
    q = question()
    after = "1799999990.000000"
    assert answers_question(message("1799999995.000001"), q, after)
    assert not answers_question(message("1799999980.000001"), q, after)  # before the bound
    assert not answers_question(message(after), q, after)  # the bound itself (Slack's oldest is exclusive)
    assert not answers_question(
        message("1799999995.000002", "command:trig.2"), q, after
    )  # another question's
    assert not answers_question(
        message("1799999995.000003", None), q, after
    )  # no metadata (metadata not asked for)
    assert not answers_question(message("1799999995.000004", event_type="other_app"), q, after)
    assert not answers_question(
        {"ts": "1799999995.000005", "metadata": {"event_type": ANSWER_EVENT}}, q, after
    )


def test_the_note_before_the_first_message_keeps_when_it_was_asked() -> None:
    q = question(asked_at=1_800_000_123.5)
    resumed, posted = Question.resumed(q.note([]), client=None)  # type: ignore[arg-type]
    assert posted == [] and resumed.asked_at == 1_800_000_123.5
    assert resumed.lookup_from() == q.lookup_from()
