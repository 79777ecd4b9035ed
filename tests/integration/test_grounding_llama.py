"""The verifier with the real bundled model over the real demo index (embedded store, MiniLM).

The demo question's final answer has no unsupported sentence, each sentence cites the chunk whose
text supports it (every number in it is in that chunk), and a question the handbook does not
answer gets "not found" with the closest sources.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from core.assistant import NOT_FOUND, Assistant
from core.config import load_settings
from core.contracts import Answer, Delta, Hit, Request
from core.engine import build_assistant
from core.grounding.text import numbers, split_sentences
from core.grounding.verify import Verifier
from server.cli import main

HANDBOOK = Path(__file__).resolve().parents[2] / "deploy" / "demo" / "handbook"
DEMO_QUESTION = "How many vacation days do new employees get, and how do I request time off?"

pytestmark = [pytest.mark.llama, pytest.mark.slow]


@pytest.fixture
def demo_config(tmp_path: Path, bundled_model: Path) -> Path:
    """The demo's configuration (bundled model, the handbook) in a temporary home, indexed."""
    config = tmp_path / "hearth.yaml"
    data = {
        "home": str(tmp_path / "home"),
        "llm": {"local": {"n_ctx": 2048, "n_threads": 2}, "max_tokens": 60},
        "sources": [{"name": "handbook", "type": "files", "path": str(HANDBOOK), "include": ["**/*.md"]}],
    }
    config.write_text(yaml.safe_dump(data), encoding="utf-8")
    result = CliRunner().invoke(main, ["--config", str(config), "index"])
    assert result.exit_code == 0, result.output
    return config


@pytest.fixture
async def demo(demo_config: Path) -> AsyncIterator[Assistant]:
    assistant = build_assistant(load_settings(demo_config))
    yield assistant
    await assistant.aclose()


def _cited_chunk_supports(answer: Answer, question: str) -> None:
    by_number = {c.number: c for c in answer.citations}
    verifier = Verifier(min_support=0.5)
    sentences = split_sentences(answer.text)
    assert sentences
    for sentence in sentences:
        assert len(sentence.cited) == 1 and sentence.cited[0] in by_number, sentence
        chunk = by_number[sentence.cited[0]]
        # Independently of the verifier: every number the sentence states is in the chunk it cites.
        assert numbers(sentence.text) <= numbers(chunk.text), (sentence.text, chunk.uri)
        hit = Hit(chunk.chunk_id, chunk.doc_id, chunk.uri, chunk.title, chunk.text, chunk.score)
        assert verifier.support(sentence, verifier.passages([hit]), question).supported, sentence.text


async def test_the_demo_answer_says_only_what_its_cited_chunks_say(demo: Assistant) -> None:
    events = [e async for e in demo.ask_stream(Request(text=DEMO_QUESTION))]
    answer = events[-1]
    assert isinstance(answer, Answer) and answer.backend == "local"
    assert any(isinstance(e, Delta) for e in events[:-1])  # it still streams
    assert answer.grounding is not None and not answer.grounding.not_found
    assert "20 vacation days" in answer.text.replace("**", "")
    assert any(c.uri.endswith("leave-policy.md") for c in answer.citations)
    _cited_chunk_supports(answer, DEMO_QUESTION)
    # Whatever the model added that no chunk supports is gone from the text and listed.
    for removed in answer.grounding.removed:
        assert removed not in answer.text


async def test_a_question_the_handbook_does_not_answer_is_not_found(demo: Assistant) -> None:
    answer = await demo.ask(Request(text="Can I bring my dog to work?"))
    assert answer.text == NOT_FOUND
    assert answer.grounding is not None and answer.grounding.not_found
    assert answer.citations  # the closest sources, so the asker can look for themselves


def test_hearth_ask_json_marks_nothing_and_lists_support_scores(demo_config: Path) -> None:
    out = CliRunner().invoke(
        main,
        ["--config", str(demo_config), "ask", "--json", "What do I get paid for a week as primary on call?"],
    )
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    assert "300 EUR" in data["answer"]
    grounding = data["grounding"]
    assert grounding["mode"] == "drop" and grounding["sentences"]
    for sentence in grounding["sentences"]:
        assert 0 <= sentence["support"] <= 1
        # What the answer shows is supported; what is not supported is not shown.
        assert sentence["supported"] == (sentence["text"] not in grounding["removed"])
