"""BM25 sparse vectors: term weights computed here, IDF applied by Qdrant (``Modifier.IDF``).

Terms are lower-cased word tokens, lightly stemmed, stop words dropped, and hashed into a 31-bit
index space, so no vocabulary has to be stored or kept in sync.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter

_TOKEN = re.compile(r"[^\W_]+", re.UNICODE)
STOP_WORDS = frozenset(
    "a an and are as at be but by can could did do does for from had has have how i if in into is it its "
    "me my no not of on or our so than that the their them then there these they this to us was we were "
    "what when where which who why will with would you your".split()
)
K1 = 1.2
B = 0.75
AVG_DOC_TERMS = 120.0  # typical terms per 1000-character chunk; BM25 length normalisation pivots here


def stem(token: str) -> str:
    """A tiny suffix stripper so 'days'/'day' and 'requesting'/'request' meet."""
    if len(token) > 4 and token.endswith("ies"):
        return token[:-3] + "y"
    if len(token) > 5 and token.endswith("ing"):
        return token[:-3]
    if len(token) > 4 and token.endswith("ed") and not token.endswith("eed"):
        return token[:-2]
    if len(token) > 3 and token.endswith("s") and not token.endswith(("ss", "us", "is")):
        return token[:-1]
    return token


def terms(text: str) -> list[str]:
    """The BM25 terms of ``text`` in order."""
    return [stem(t) for t in (m.group(0).lower() for m in _TOKEN.finditer(text)) if t not in STOP_WORDS]


def term_index(term: str) -> int:
    """The sparse-vector index of a term (stable across processes and versions)."""
    return int.from_bytes(hashlib.blake2b(term.encode("utf-8"), digest_size=4).digest(), "big") & 0x7FFFFFFF


def _vector(weights: dict[int, float]) -> tuple[list[int], list[float]]:
    indices = sorted(weights)
    return indices, [weights[i] for i in indices]


def document_vector(text: str) -> tuple[list[int], list[float]]:
    """BM25 term-frequency weights of a chunk: tf·(k1+1) / (tf + k1·(1 − b + b·len/avg))."""
    found = terms(text)
    norm = K1 * (1 - B + B * len(found) / AVG_DOC_TERMS)
    weights: dict[int, float] = {}
    for term, tf in Counter(found).items():
        index = term_index(term)
        weights[index] = weights.get(index, 0.0) + tf * (K1 + 1) / (tf + norm)
    return _vector(weights)


def query_vector(text: str) -> tuple[list[int], list[float]]:
    """Each distinct query term weighs 1 (Qdrant multiplies by IDF)."""
    return _vector({term_index(t): 1.0 for t in set(terms(text))})
