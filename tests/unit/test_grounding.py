"""The answer verifier over hand-made answers: planted unsupported sentences and numbers are removed,
supported sentences kept with the citation of the chunk that supports them; quote mode; the eval."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from core.assistant import NO_SOURCES, NOT_FOUND, Assistant
from core.contracts import Answer, Delta, Hit, Request
from core.errors import BackendUnavailable, InputError
from core.grounding import Grounder
from core.grounding.evaluation import Case, evaluate, fact_in, load_cases
from core.grounding.quotes import pick_quotes
from core.grounding.text import numbers, rates, split_sentences, strict_tokens
from core.grounding.verify import Verifier
from core.llm.fake import FakeBackend
from core.llm.router import Router
from core.retrieval.config import RetrievalSettings
from tests.fixtures.core import make_settings

LEAVE = """## Vacation days

New employees get **20 vacation days per year**, starting on their first day. The allowance is
pro-rated in your first calendar year: someone who joins on 1 July gets 10 days for that year.

Up to 5 unused days carry over into the next year and must be used by 31 March; the rest lapse.

## Requesting time off

Open the **Time Off** tab in the HR portal (BambooHR, https://northwind.bamboohr.com) and choose
"Request vacation". Your manager approves or declines the request within three working days."""

EXPENSES = """## What you can expense

- Hotels up to 180 EUR per night (250 EUR in London, New York, Zurich and Tokyo).
- Meals while travelling: up to 60 EUR per day, alcohol excluded."""

ONCALL = """## Compensation

On-call engineers receive a flat stipend of 300 EUR per week of primary on-call and 150 EUR per week
as secondary. To roll back by hand, run `/deploy api rollback` in #deploys."""


def hits() -> list[Hit]:
    return [
        Hit(
            "c-exp",
            "d-exp",
            "handbook/expenses.md",
            "Expenses",
            EXPENSES,
            0.9,
            "Expenses › What you can expense",
        ),
        Hit("c-leave", "d-leave", "handbook/leave.md", "Leave policy", LEAVE, 0.8, "Leave › Vacation days"),
        Hit("c-call", "d-call", "handbook/on-call.md", "On-call", ONCALL, 0.7, "On-call › Compensation"),
    ]


class FakeRetriever:
    """Fixed hits, first ``k``; no ranking, no ACL (the verifier is what is under test)."""

    def __init__(self, found: list[Hit]) -> None:
        self.found = found

    async def search(self, query: str, *, acl: frozenset[str] | None, k: int) -> Sequence[Hit]:
        return self.found[:k]


def assistant(tmp_path: Path, reply: str, **retrieval: Any) -> tuple[Assistant, FakeBackend]:
    settings = make_settings(tmp_path, retrieval={"quote": "never", **retrieval})
    backend = FakeBackend(reply=reply)
    router = Router(local=backend, remote=None, routing=settings.llm.routing)
    return Assistant(settings, router, retriever=FakeRetriever(hits())), backend


# --- sentences and strict tokens --------------------------------------------------------------


def test_sentences_keep_citations_and_rejoin_wrapped_lines() -> None:
    got = split_sentences(
        "New hires get 20 days [2]. Ask e.g. your manager.\n- Roll back with\n  `/deploy`. [1]"
    )
    assert [(s.text, s.cited) for s in got] == [
        ("New hires get 20 days.", (2,)),
        ("Ask e.g. your manager.", ()),
        ("Roll back with `/deploy`.", (1,)),
    ]


def test_strict_tokens_are_numbers_currencies_dates_names_and_commands() -> None:
    tokens = set(
        strict_tokens("Pay is $1,500 by 31 March in PagerDuty; run `/deploy api rollback`.").values()
    )
    assert {"1500", "$", "31", "march", "pagerduty", "/deploy api rollback"} <= tokens
    assert numbers("three working days, the fourth day, 09:00") == {"3", "4", "9:00"}
    assert rates("a stipend of 750 EUR per month, 30 days a year") == {("750", "month"), ("30", "year")}


# --- the verifier ------------------------------------------------------------------------------


QUESTION = "How many vacation days do new employees get, and how do I request time off?"


@pytest.mark.parametrize(
    "planted",
    [
        # The fabrication: nothing like it in the handbook.
        "If you are a contractor or an employee who works in the field of health care, you can request "
        "time off for your employer's holidays.",
        "New employees get 25 vacation days per year.",  # a wrong number
        "Hotels cost up to $250 per night in Tokyo.",  # a wrong currency
        "Hotels in Paris are limited to 250 EUR per night.",  # a name no chunk has
        "Roll back with `/deploy web rollback` in #deploys.",  # a wrong command
        "Unused days must be used by 31 May.",  # a wrong date
        "Primary on-call pays 300 EUR per month.",  # the right amount for the wrong period
    ],
)
def test_each_planted_sentence_is_removed_and_the_supported_ones_keep_their_chunk(planted: str) -> None:
    text = f"New employees get 20 vacation days per year [3]. {planted} Up to 5 unused days carry over [1]."
    checked = Verifier(min_support=0.5).check(text, hits(), QUESTION)
    assert [c.supported for c in checked] == [True, False, True]
    # The citation is the chunk that supports the sentence, not the number the model wrote.
    assert [c.source for c in checked] == [1, None, 1]


def test_a_sentence_that_only_repeats_a_heading_or_a_path_is_no_claim() -> None:
    checked = Verifier().check("Vacation days [2]. Expenses (handbook/expenses.md). Claims are paid.", hits())
    assert [c.supported for c in checked] == [False, False, False]


def test_supported_sentences_across_chunks_get_each_their_own_chunk() -> None:
    text = (
        "The hotel limit in Tokyo is 250 EUR per night. Primary on-call pays 300 EUR a week. "
        "You get twenty vacation days. To roll back, run `/deploy api rollback`."
    )
    checked = Verifier(min_support=0.5).check(text, hits(), "hotel limit, on-call pay, vacation, rollback")
    assert [(c.supported, c.source) for c in checked] == [(True, 0), (True, 2), (True, 1), (True, 2)]


def test_grounder_drops_and_cites_in_drop_mode_and_marks_in_mark_mode() -> None:
    grounder = Grounder(RetrievalSettings(min_support=0.5))
    model = "Hotels in Tokyo: 250 EUR per night [2]. Contractors get 40 days off [1]. You get 20 vacation days [1]."
    text, citations, grounding = grounder.finish(model, hits(), "hotel limit Tokyo and vacation", "drop")
    assert text == "Hotels in Tokyo: 250 EUR per night [1]. You get 20 vacation days [2]."
    assert [(c.number, c.chunk_id) for c in citations] == [(1, "c-exp"), (2, "c-leave")]
    assert grounding.removed == ["Contractors get 40 days off."]
    marked, _, record = grounder.finish(model, hits(), "hotel limit Tokyo and vacation", "mark")
    assert "Contractors get 40 days off [not in the sources]." in marked and record.removed == []
    scores = {s["text"]: s["support"] for s in record.as_dict()["sentences"]}
    assert scores["Contractors get 40 days off."] < 0.5 <= scores["You get 20 vacation days."]


def test_nothing_supported_is_not_found_with_the_closest_sources() -> None:
    grounder = Grounder(RetrievalSettings())
    text, citations, grounding = grounder.finish("Dogs are welcome on Fridays.", hits(), "dogs?", "drop")
    assert text == NOT_FOUND and grounding.not_found
    assert [c.chunk_id for c in citations] == ["c-exp", "c-leave", "c-call"]
    # The model saying "not found" is no fabrication: not listed as removed.
    text, _, grounding = grounder.finish("I could not find this in the docs.", hits(), "dogs?", "drop")
    assert text == NOT_FOUND and grounding.removed == []


# --- through the assistant ---------------------------------------------------------------------


async def test_the_final_answer_replaces_the_streamed_text_with_the_verified_one(tmp_path: Path) -> None:
    reply = (
        "New employees get 20 vacation days per year [2]. Contractors in health care get 40 more days [1]."
    )
    asst, _ = assistant(tmp_path, reply)
    events = [e async for e in asst.ask_stream(Request(text=QUESTION))]
    streamed = "".join(e.text for e in events if isinstance(e, Delta))
    answer = events[-1]
    assert isinstance(answer, Answer) and "health care" in streamed
    assert answer.text == "New employees get 20 vacation days per year [1]."
    assert [c.chunk_id for c in answer.citations] == ["c-leave"]
    data = answer.as_dict()
    assert data["grounding"]["removed"] == ["Contractors in health care get 40 more days."]
    assert data["grounding"]["mode"] == "drop"


async def test_request_grounding_mark_keeps_and_scores_every_sentence(tmp_path: Path) -> None:
    asst, _ = assistant(tmp_path, "You get 20 vacation days [1]. Dogs are welcome [1].")
    answer = await asst.ask(Request(text=QUESTION, grounding="mark"))
    assert answer.text == "You get 20 vacation days [1]. Dogs are welcome [not in the sources]."
    sentences = answer.as_dict()["grounding"]["sentences"]
    assert [(s["supported"], s["citation"]) for s in sentences] == [(True, 1), (False, None)]


async def test_grounding_off_keeps_the_model_text_and_its_citations(tmp_path: Path) -> None:
    asst, _ = assistant(tmp_path, "Dogs are welcome [2].", grounding="off")
    answer = await asst.ask(Request(text="dogs?"))
    assert answer.text == "Dogs are welcome [2]." and answer.grounding is None
    assert [c.number for c in answer.citations] == [2]


async def test_quote_mode_leads_with_the_answering_sentence_and_prompts_with_it(tmp_path: Path) -> None:
    asst, backend = assistant(tmp_path, "The Tokyo limit is 250 EUR per night.", quote="always")
    events = [e async for e in asst.ask_stream(Request(text="What's the nightly hotel limit in Tokyo?"))]
    first = events[0]
    assert isinstance(first, Delta) and first.text.startswith("> Hotels up to 180 EUR per night (250 EUR")
    answer = events[-1]
    assert isinstance(answer, Answer)
    assert answer.text == (
        "> Hotels up to 180 EUR per night (250 EUR in London, New York, Zurich and Tokyo). [1]\n\n"
        "The Tokyo limit is 250 EUR per night [1]."
    )
    assert answer.citations[0].chunk_id == "c-exp"
    prompt = backend.calls[0].messages[-1].content
    assert "Hotels up to 180 EUR" in prompt and "vacation" not in prompt


async def test_quote_mode_answers_not_found_without_the_model_when_nothing_answers(tmp_path: Path) -> None:
    asst, backend = assistant(tmp_path, "Dogs are welcome.", quote="always")
    answer = await asst.ask(Request(text="Can I bring my dog to the office?"))
    assert answer.text == NOT_FOUND and answer.grounding is not None and answer.grounding.not_found
    assert backend.calls == [] and len(answer.citations) == 3


def test_a_two_part_question_gets_a_quote_for_each_part() -> None:
    quotes = pick_quotes(QUESTION, hits(), limit=2, min_relevance=0.2)
    assert [q.text[:24] for q in quotes] == ["New employees get 20 vac", "Open the Time Off tab in"]
    single = pick_quotes("What's the nightly hotel limit in Tokyo?", hits(), limit=2, min_relevance=0.2)
    assert [q.text[:10] for q in single] == ["Hotels up "]


def test_quotes_prefer_the_sentence_under_the_matching_heading() -> None:
    quotes = pick_quotes("By when must I use carried-over days?", hits(), limit=1, min_relevance=0.2)
    assert quotes and quotes[0].text.startswith("Up to 5 unused days carry over")


async def test_no_sources_configured_says_the_answer_is_the_bare_model(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    asst = Assistant(settings, Router(local=FakeBackend(reply="Paris."), remote=None))
    answer = await asst.ask(Request(text="Capital of France?"))
    assert answer.text == "Paris." and NO_SOURCES in answer.notices


# --- the eval ---------------------------------------------------------------------------------


def test_fact_matching_ignores_case_markdown_separators_and_number_words() -> None:
    assert fact_in("1,500 EUR", "a budget of **1500 eur** a year")
    assert fact_in("one hour", "report it within 1 hour.")
    assert fact_in("/deploy api rollback", "run `/deploy api rollback` in #deploys")
    assert not fact_in("30 days", "up to 300 days")


def test_question_file_errors_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "q.jsonl"
    path.write_text('{"question": "a?", "fact": "x"}\n{"question": "b?"}\n', encoding="utf-8")
    with pytest.raises(InputError, match=r"q.jsonl:2"):
        load_cases(path)


async def test_evaluate_counts_facts_not_found_and_unsupported(tmp_path: Path) -> None:
    replies = {
        "hotel": "Hotels in Tokyo: 250 EUR per night.",
        "vacation": "You get 25 vacation days.",  # wrong: removed, fact missed
        "dog": "Dogs are welcome.",
    }
    settings = make_settings(tmp_path, retrieval={"quote": "never"})

    def reply(messages: Sequence[Any]) -> str:
        question = messages[-1].content.rsplit("Question:", 1)[-1]
        return next(v for k, v in replies.items() if k in question)

    router = Router(local=FakeBackend(reply=reply), remote=None)
    asst = Assistant(settings, router, retriever=FakeRetriever(hits()))
    cases = [Case("hotel limit in Tokyo?", ("250 EUR",)), Case("vacation days?", ("20",)), Case("dog?", ())]
    figures = (await evaluate(asst, cases, Verifier(min_support=0.5))).figures()
    assert figures["fact_hit_rate"] == 0.5 and figures["not_found_correct"] == 1.0
    assert figures["unsupported_share"] == 0.0 and figures["verifier_removed_share"] == pytest.approx(
        2 / 3, 0.01
    )
    assert figures["errors"] == 0


async def test_a_question_the_model_fails_on_is_a_miss_and_the_run_goes_on(tmp_path: Path) -> None:
    def reply(messages: Sequence[Any]) -> str:
        if "vacation" in messages[-1].content.rsplit("Question:", 1)[-1]:
            raise BackendUnavailable("the engine is busy")
        return "Hotels in Tokyo: 250 EUR per night."

    # No breaker pause between the two questions: the second one is answered.
    settings = make_settings(
        tmp_path, retrieval={"quote": "never"}, llm={"routing": {"breaker_cooldown_s": 0}}
    )
    router = Router(local=FakeBackend(reply=reply), remote=None, routing=settings.llm.routing)
    asst = Assistant(settings, router, retriever=FakeRetriever(hits()))
    cases = [Case("vacation days?", ("20",)), Case("hotel limit in Tokyo?", ("250 EUR",))]
    report = await evaluate(asst, cases, Verifier())
    assert report.figures()["errors"] == 1 and report.figures()["fact_hit_rate"] == 0.5
    assert "busy" in report.outcomes[0].error and report.outcomes[1].fact_hit


def test_demo_question_file_has_answerable_and_out_of_scope_questions() -> None:
    path = Path(__file__).resolve().parents[2] / "deploy" / "demo" / "answers.jsonl"
    cases = load_cases(path)
    handbook = "\n".join(p.read_text(encoding="utf-8") for p in (path.parent / "handbook").glob("*.md"))
    assert sum(c.answerable for c in cases) >= 20 and sum(not c.answerable for c in cases) >= 2
    for case in cases:  # every fact is in the handbook, as the handbook writes it
        assert all(fact_in(f, handbook) for f in case.facts), case.question


def test_eval_answers_cli_rejects_a_bad_file(tmp_path: Path) -> None:
    from server.cli import main

    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"question": "x"}) + "\n", encoding="utf-8")
    result = CliRunner().invoke(main, ["eval", "answers", str(path)])
    assert result.exit_code == 1 and "bad.jsonl:1" in result.output
