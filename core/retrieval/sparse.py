"""BM25 sparse vectors from Qdrant's own encoder (``qdrant_edge.Bm25``); IDF is applied by Qdrant.

The same token ids and term weights as a Qdrant server's BM25, for both store backends. Text is
analysed with a word tokenizer and the language's stemmer and stop words (English by default);
text in Chinese, Japanese or Korean is also run through Qdrant's multilingual tokenizer, which
segments it into words (a word tokenizer would make a whole sentence one token). A chunk's
vector is the union of its analyses, so numbers and Latin terms inside CJK text still match::

    document_vector("新员工每年有二十天年假。")           # multilingual + English analysis
    query_vector("年假", languages=("english",))       # matches the chunk above
    document_vector("Urlaubstage pro Jahr", "german")  # German stemmer and stop words
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache

from qdrant_edge import Bm25, Bm25Config, TokenizerType

from core.errors import ConfigError

Sparse = tuple[list[int], list[float]]

# Han, Hiragana/Katakana, Hangul (and their compatibility blocks).
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\uff66-\uff9f]")
# Source languages whose text is always segmented by the multilingual tokenizer.
CJK_LANGUAGES = frozenset({"chinese", "japanese", "korean", "multilingual"})
AUTO = "auto"
DEFAULT_LANGUAGE = "english"
# Expected tokens per chunk after stop words (a 1000-character chunk): BM25 length normalisation
# pivots here. Qdrant's default, 256, suits longer documents than Hearth's chunks.
AVG_LEN = 120.0


@lru_cache(maxsize=32)
def _model(language: str, multilingual: bool) -> Bm25:
    """One encoder per (language, tokenizer); raises ValueError for an unknown language."""
    tokenizer = TokenizerType.Multilingual if multilingual else TokenizerType.Word
    return Bm25(Bm25Config(avg_len=AVG_LEN, tokenizer=tokenizer, language=language))


def check_language(language: str) -> str:
    """``language`` lower-cased, or a ConfigError naming the choices."""
    lang = language.strip().lower()
    if lang in (AUTO, *CJK_LANGUAGES):
        return lang
    try:
        _model(lang, False)
    except ValueError:
        raise ConfigError(
            f"Unknown language '{language}' for BM25 — use auto, english, german, french, spanish, "
            "chinese, japanese, korean, … (Qdrant's stemmer languages)."
        ) from None
    return lang


def has_cjk(text: str) -> bool:
    """Whether ``text`` contains Chinese, Japanese or Korean characters."""
    return _CJK.search(text) is not None


def _analyses(text: str, language: str) -> list[Bm25]:
    word = DEFAULT_LANGUAGE if language in (AUTO, *CJK_LANGUAGES) else language
    models = [_model(word, False)]
    if language in CJK_LANGUAGES or has_cjk(text):
        models.append(_model(DEFAULT_LANGUAGE, True))
    return models


def _union(vectors: Iterable[tuple[list[int], list[float]]]) -> Sparse:
    weights: dict[int, float] = {}
    for indices, values in vectors:
        for i, v in zip(indices, values, strict=True):
            if v > weights.get(i, 0.0):
                weights[i] = v
    ordered = sorted(weights)
    return ordered, [weights[i] for i in ordered]


def document_vector(text: str, language: str = AUTO) -> Sparse:
    """BM25 term-frequency weights of a chunk, tf·(k1+1) / (tf + k1·(1 − b + b·len/avg_len))."""
    out = [
        (list(v.indices), list(v.values)) for v in (m.embed_document(text) for m in _analyses(text, language))
    ]
    return _union(out)


def query_vector(text: str, languages: Iterable[str] = (DEFAULT_LANGUAGE,)) -> Sparse:
    """Each distinct query term weighs 1 (Qdrant multiplies by IDF), analysed as each source language."""
    models: list[Bm25] = []
    for language in dict.fromkeys([DEFAULT_LANGUAGE, *languages]):
        for model in _analyses(text, language):
            if model not in models:
                models.append(model)
    out = [(list(v.indices), list(v.values)) for v in (m.embed_query(text) for m in models)]
    return _union(out)
