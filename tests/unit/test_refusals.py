"""Every reason the core can give has a sentence in every catalogue, and an HTTP status."""

from __future__ import annotations

import pytest

from bot import messages
from core.errors import InputError, SQLRejected, TableError
from core.refusals import ENGLISH, Reason, Refusal, Refused, refusal_for, sentence
from server.api import STATUS

VALUES = {"length": 5000, "limit": 4000, "seconds": 3.0, "reason": "why", "detail": "what", "attempts": 3}


@pytest.mark.parametrize(
    "catalogue", [ENGLISH, messages.REFUSALS, messages.REFUSALS_ZH], ids=["core", "chat", "zh"]
)
def test_each_catalogue_words_every_reason(catalogue: dict[Reason, str]) -> None:
    assert set(catalogue) == set(Reason)
    for reason in Reason:
        text = Refusal(reason, VALUES).text(catalogue)
        assert "{" not in text, reason  # every placeholder is one the core fills
    assert set(STATUS) == set(Reason)


def test_chinese_sentences_are_chinese() -> None:
    for reason in set(Reason) - {Reason.DUPLICATE, Reason.TABLE_ERROR, Reason.BAD_INPUT}:
        text = Refusal(reason, VALUES).text(messages.REFUSALS_ZH)
        assert any("\u4e00" <= ch <= "\u9fff" for ch in text), reason


def test_errors_map_to_their_reasons() -> None:
    assert refusal_for(InputError("x", key="too_long", length=9, limit=3)) == Refusal(
        Reason.TOO_LONG, {"length": 9, "limit": 3}, "x"
    )
    assert refusal_for(SQLRejected("writes")).reason is Reason.SQL_REJECTED
    assert refusal_for(TableError("broken")).values == {"reason": "broken"}
    assert refusal_for(InputError("plain")).values == {"detail": "plain"}
    refused = Refused(Refusal(Reason.EMPTY))
    assert str(refused) == ENGLISH[Reason.EMPTY] and refusal_for(refused) is refused.refusal
    # A bug's detail never reaches a REST client; a model failure's does.
    assert sentence(Refusal(Reason.ERROR, {}, "secret stack")) == ENGLISH[Reason.ERROR]
    assert "local: gone" in sentence(Refusal(Reason.MODEL_DOWN, {}, "local: gone"))
