"""Completion prompts on the real llama-server with the bundled model.

A file being completed never reaches the model as control tokens: the buffer spells every CONTROL
token of the Gemma vocabulary, and the prompt's token ids hold exactly one control token, the BOS
the prompt itself puts first (by id, from the GGUF). And consecutive keystrokes reuse the engine's
prompt cache: the second request evaluates only what changed at the end.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from core.code.completion import build_prompt, cursor_window
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


async def test_the_next_keystroke_reuses_the_engines_prompt_cache(bundled_model: Path) -> None:
    source = (
        "".join(f"def f_{i}(x):\n    return x + {i}\n\n\n" for i in range(200)) + "def total(prices):\n    "
    )
    info = gguf_tokenizer_info(bundled_model)
    backend = LlamaServerBackend(local(bundled_model, n_ctx=2048))
    try:
        await backend.load()
        evaluated = []
        for typed in ("", "r", "re"):  # three keystrokes at the end of the file
            lines = (source + typed).splitlines(keepends=True)
            window = cursor_window(lines, len(lines) - 1, len(lines[-1]), prefix_chars=3000, suffix_chars=300)
            prompt = build_prompt(PromptRegistry(), Completion(window.prefix, "", "python", "m.py"), info)
            options = GenOptions(prompt_parts=prompt.parts)
            tokens = await backend.prompt_tokens([Message(Role.USER, prompt.shown)], options)
            body = {"prompt": tokens, "n_predict": 4, "temperature": 0, "cache_prompt": True, "stream": False}
            async with backend.engine.session().post("/completion", json=body) as resp:
                timings = (await resp.json())["timings"]
            evaluated.append((len(tokens), timings["cache_n"], timings["prompt_n"]))
        first, *later = evaluated
        assert first[1] == 0  # a cold cache
        for total, cached, fresh in later:
            # The window's front did not move: all but the last few tokens came from the cache.
            assert cached >= total - 8 and fresh <= 8, evaluated
    finally:
        await backend.aclose()
