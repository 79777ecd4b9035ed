"""Thread history: turns from Slack messages, fitted to a budget with older turns summarized."""

from __future__ import annotations

from bot import messages
from bot.slack.history import fit, turns_from
from core.contracts import Turn


def test_turns_from_thread_skips_current_and_later_and_placeholders():
    raw = [
        {"ts": "1.000001", "user": "U1", "text": "<@UBOT> What is X?"},
        {"ts": "1.000002", "user": "UBOT", "bot_id": "BBOT", "text": "X is a thing."},
        {"ts": "1.000003", "user": "UBOT", "bot_id": "BBOT", "text": "More on X."},
        {"ts": "1.000004", "user": "UBOT", "bot_id": "BBOT", "text": messages.THINKING},
        {"ts": "1.000005", "user": "U1", "text": "edited", "subtype": "message_changed"},
        {"ts": "1.000006", "user": "U1", "text": "<@UBOT> And Y?"},
        {"ts": "1.000007", "user": "U2", "text": "later"},
    ]
    turns = turns_from(raw, bot_user_id="UBOT", bot_id="BBOT", before_ts="1.000006")
    assert turns == [Turn("user", "What is X?"), Turn("assistant", "X is a thing.\nMore on X.")]


def test_fit_keeps_newest_and_summarizes_older_questions():
    turns = []
    for i in range(10):
        turns += [Turn("user", f"question {i}"), Turn("assistant", "answer " + "x" * 100)]
    fitted = fit(turns, 600)
    assert sum(len(t.text) for t in fitted) <= 600 + 200
    assert fitted[-1] == turns[-1]
    assert fitted[0].role == "user" and "older message(s) left out" in fitted[0].text
    assert "question 0" in fitted[0].text


def test_fit_without_overflow_changes_nothing():
    turns = [Turn("user", "hi"), Turn("assistant", "hello")]
    assert fit(turns, 1000) == turns
