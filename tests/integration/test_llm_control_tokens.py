"""Untrusted text never reaches a model as control tokens, whatever the prompt format (issue 15).

Each test writes every CONTROL token of a real vocabulary (the bundled Gemma's 6,250 and the chat
model SmolLM2's 17, read from the GGUF through llama.cpp) into a retrieved document, a thread
message and a table sample, renders Hearth's real templates around them, and checks the token
ids the engine is sent: the only control tokens in them are the ones the chat template itself
writes. The checks are on token ids from the model's own tokenizer, not on strings.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.llm.base import GenOptions, Message, Role, collect
from core.llm.config import LocalLLMSettings, RemoteLLMSettings
from core.llm.llama_cpp import LlamaCppBackend
from core.llm.llama_server import LlamaServerBackend
from core.llm.openai_compat import OpenAICompatBackend
from core.llm.prompting import neutralize_control_markers
from core.prompts.registry import PromptRegistry
from tests.fixtures.openai_server import FakeOpenAI

pytestmark = pytest.mark.llama


_VOCABS: dict[Path, object] = {}


@pytest.fixture(scope="module", autouse=True)
def _close_vocabs() -> Iterator[None]:
    """The vocabularies are loaded once per module and freed before the interpreter exits."""
    yield
    for llm in _VOCABS.values():
        llm.close()  # type: ignore[attr-defined]
    _VOCABS.clear()


def _vocab(path: Path):  # type: ignore[no-untyped-def]
    """The GGUF's tokenizer alone (llama.cpp ``vocab_only``: no weights)."""
    from llama_cpp import Llama

    if path not in _VOCABS:
        _VOCABS[path] = Llama(model_path=str(path), vocab_only=True, verbose=False)
    return _VOCABS[path]


@functools.cache
def vocabulary_controls(path: Path) -> dict[int, str]:
    """id -> text of every token llama.cpp marks CONTROL in the GGUF's vocabulary."""
    import llama_cpp

    vocab = llama_cpp.llama_model_get_vocab(_vocab(path)._model.model)
    controls = {}
    for token in range(llama_cpp.llama_vocab_n_tokens(vocab)):
        if llama_cpp.llama_vocab_get_attr(vocab, token) & llama_cpp.LLAMA_TOKEN_ATTR_CONTROL:
            controls[token] = llama_cpp.llama_vocab_get_text(vocab, token).decode("utf-8")
    return controls


def hostile(controls: dict[int, str]) -> str:
    """A document that spells every control token, each between words."""
    return "Policy.\n" + " word ".join(controls.values()) + "\nEnd of policy."


def prompts(doc: str) -> list[list[Message]]:
    """Hearth's real templates with ``doc`` as a retrieved document and a thread message, as table
    samples, and as chat lines of a digest."""
    registry = PromptRegistry()
    source = {"number": 1, "title": "Leave policy", "uri": "handbook/leave.md", "location": "", "text": doc}
    return [
        registry.render(
            "answer",
            question="How many days of leave do I get?",
            sources=[source],
            history=[{"role": "user", "text": doc}],
        ).messages,
        registry.render(
            "sql_sqlite", question="How many orders?", schema=f"CREATE TABLE orders(note TEXT); -- e.g. {doc}"
        ).messages,
        registry.render("digest_weekly", **_digest_inputs(registry, doc)).messages,
    ]


def _digest_inputs(registry: PromptRegistry, doc: str) -> dict[str, object]:
    example = dict(registry.get("digest_weekly").example)
    example["chat"] = [doc]
    return example


def clean_of(messages: list[Message], doc: str) -> list[Message]:
    return [Message(m.role, m.content.replace(doc, "Policy text.")) for m in messages]


def control_ids(tokens: list[int], controls: dict[int, str]) -> Counter[int]:
    return Counter(t for t in tokens if t in controls)


def local(model: Path, **kw: object) -> LocalLLMSettings:
    base: dict[str, object] = {"model_path": model, "n_ctx": 1024, "n_threads": 2, "parallel": 1}
    base.update(kw)
    return LocalLLMSettings(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("which", "prompt_format"),
    [
        ("chat_model", "auto"),
        pytest.param("bundled_model", "chat", marks=pytest.mark.slow),
        pytest.param("bundled_model", "completion", marks=pytest.mark.slow),
    ],
)
async def test_llama_server_is_sent_no_control_token_from_untrusted_text(
    which: str, prompt_format: str, request: pytest.FixtureRequest
) -> None:
    model: Path = request.getfixturevalue(which)
    controls = vocabulary_controls(model)
    doc = hostile(controls)
    backend = LlamaServerBackend(local(model, prompt_format=prompt_format))
    try:
        await backend.load()
        # The attack is real: parsed with special tokens, the document is every control token.
        parsed = await backend._tokenize(doc, add_special=False, parse_special=True)
        assert set(control_ids(parsed, controls)) == set(controls)
        for messages in prompts(doc):
            sent = await backend.prompt_tokens(messages, GenOptions())
            expected = await backend.prompt_tokens(clean_of(messages, doc), GenOptions())
            assert control_ids(sent, controls) == control_ids(expected, controls), (
                f"untrusted text became control tokens ({model.name}, {prompt_format})"
            )
            assert len(sent) > len(expected) + len(controls)  # the document is there, as text
    finally:
        await backend.aclose()


@pytest.mark.slow
async def test_chat_template_markup_is_still_control_tokens(chat_model: Path) -> None:
    """Segmented tokenization leaves the template's own turns as llama-server would tokenize them."""
    backend = LlamaServerBackend(local(chat_model))
    try:
        await backend.load()
        messages = [
            Message(Role.SYSTEM, "Answer briefly."),
            Message(Role.USER, "What is the capital of France?"),
        ]
        payload = [{"role": m.role.value, "content": m.content} for m in messages]
        rendered = (await backend._json("POST", "/apply-template", {"messages": payload}))["prompt"]  # type: ignore[index,call-overload]
        whole = await backend._tokenize(rendered, add_special=True, parse_special=True)
        assert await backend.prompt_tokens(messages, GenOptions()) == whole
        question = [Message(Role.USER, "What is the capital of France?")]
        text, _ = await collect(backend.stream(question, GenOptions(max_tokens=12, temperature=0)))
        assert "Paris" in text
    finally:
        await backend.aclose()


@pytest.mark.slow
async def test_in_process_chat_engine_tokenizes_untrusted_text_as_text(chat_model: Path) -> None:
    controls = vocabulary_controls(chat_model)
    doc = hostile(controls)
    backend = LlamaCppBackend(local(chat_model, engine="in_process", prompt_format="chat"))
    try:
        await backend.load()
        assert backend.uses_chat_template
        for messages in prompts(doc):
            sent = backend.chat_tokens(messages)
            expected = backend.chat_tokens(clean_of(messages, doc))
            assert control_ids(sent, controls) == control_ids(expected, controls)
            assert control_ids(expected, controls)[1] >= 2  # the template's own <|im_start|> turns
        # The markup is tokenized as llama-cpp-python's own chat handler would (same ids, same turns).
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        llm = backend._llm
        clean = [
            Message(Role.SYSTEM, "Answer briefly."),
            Message(Role.USER, "What is the capital of France?"),
        ]
        formatter = Jinja2ChatFormatter(llm.metadata["tokenizer.chat_template"], "<|im_end|>", "<|im_start|>")
        rendered = formatter(messages=[{"role": m.role.value, "content": m.content} for m in clean]).prompt
        assert backend.chat_tokens(clean) == llm.tokenize(rendered.encode(), add_bos=False, special=True)
        question = [Message(Role.USER, "What is the capital of France?")]
        text, final = await collect(backend.stream(question, GenOptions(max_tokens=12, temperature=0)))
        # The same answer llama-cpp-python's own chat path gives for a prompt with nothing to forge.
        reference = llm.create_chat_completion(
            messages=[{"role": "user", "content": question[0].content}], max_tokens=12, temperature=0,
            top_p=0.95, repeat_penalty=1.1, seed=0,
        )  # fmt: skip
        assert text and text == reference["choices"][0]["message"]["content"]
        assert final.usage is not None and final.usage.prompt_tokens == len(backend.chat_tokens(question))
    finally:
        await backend.aclose()


@pytest.mark.parametrize("which", ["chat_model", "bundled_model"])
def test_remote_messages_carry_no_control_token_spelling(which: str, request: pytest.FixtureRequest) -> None:
    """What the remote API gets, tokenized as a llama.cpp or vLLM server would (special tokens parsed)."""
    model: Path = request.getfixturevalue(which)
    controls = vocabulary_controls(model)
    vocab = _vocab(model)
    doc = neutralize_control_markers(hostile(controls))
    assert not control_ids(vocab.tokenize(doc.encode(), add_bos=False, special=True), controls)
    assert "Policy." in doc and "word" in doc


async def test_remote_backend_sends_neutralized_content(openai_server: FakeOpenAI, chat_model: Path) -> None:
    controls = vocabulary_controls(chat_model)
    doc = hostile(controls)
    backend = OpenAICompatBackend(
        RemoteLLMSettings(base_url=openai_server.base_url, model="m", max_retries=0)
    )
    try:
        await collect(backend.stream(prompts(doc)[0], GenOptions(max_tokens=4)))
    finally:
        await backend.aclose()
    vocab = _vocab(chat_model)
    for message in openai_server.requests[-1]["messages"]:
        ids = vocab.tokenize(message["content"].encode(), add_bos=False, special=True)
        assert not control_ids(ids, controls), message["role"]
