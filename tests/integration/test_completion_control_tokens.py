"""A file being completed never reaches the model as control tokens (the verbatim completion prompt).

The buffer spells every CONTROL token of the bundled Gemma's vocabulary; the completion prompt's
token ids, as llama-server is sent them, hold exactly one control token: the BOS the prompt itself
puts first (by id, from the GGUF). A suggestion still comes back.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from core.code.completion import build_prompt
from core.contracts import Completion, Snippet
from core.llm.base import GenOptions, Message, Role, collect
from core.llm.gguf import gguf_tokenizer_info
from core.llm.llama_server import LlamaServerBackend
from core.prompts.registry import PromptRegistry
from tests.integration.test_llm_control_tokens import control_ids, hostile, local, vocabulary_controls

pytestmark = pytest.mark.llama


async def test_completion_prompt_carries_no_control_token_from_the_code(bundled_model: Path) -> None:
    controls = vocabulary_controls(bundled_model)
    code = f'NOTE = """{hostile(controls)}"""\n\n\ndef total(prices):\n    '
    info = gguf_tokenizer_info(bundled_model)
    snippet = Snippet("other.py", hostile(controls))
    prompt = build_prompt(PromptRegistry(), Completion(code, "", "python", "m.py", (snippet,)), info)
    backend = LlamaServerBackend(local(bundled_model))
    try:
        await backend.load()
        options = GenOptions(max_tokens=8, temperature=0, prompt_parts=prompt.parts)
        tokens = await backend.prompt_tokens([Message(Role.USER, prompt.shown)], options)
        assert info.bos is not None and tokens[0] == info.bos.id
        assert control_ids(tokens, controls) == Counter({info.bos.id: 1})
        # A buffer that fits the context (40 control-token spellings): the engine continues it.
        some = dict(list(controls.items())[:40])
        short = f"# {hostile(some)}\ndef total(prices):\n    "
        small = build_prompt(PromptRegistry(), Completion(short, "", "python", "m.py"), info)
        options = GenOptions(max_tokens=8, temperature=0, prompt_parts=small.parts)
        tokens = await backend.prompt_tokens([Message(Role.USER, small.shown)], options)
        assert control_ids(tokens, controls) == Counter({info.bos.id: 1})
        text, final = await collect(backend.stream([Message(Role.USER, small.shown)], options))
        assert final.usage is not None and final.usage.prompt_tokens == len(tokens)
        assert text  # the engine took the verbatim prompt and continued it
    finally:
        await backend.aclose()
