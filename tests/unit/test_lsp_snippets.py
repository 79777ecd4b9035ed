"""Related snippets for inline completion: what the code uses from other open files, and index hits
searched in the background (a suggestion never waits for them, and they stay put while typing)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from core.contracts import Hit
from lsp.snippets import OpenFile, SnippetSource

PRICING = '''def apply_discount(total, rate):
    """Take rate (0..1) off total."""
    return total * (1 - rate)


def unused_helper():
    return 1
'''


class Index:
    """A retriever that records its queries and answers one hit from another file."""

    def __init__(self) -> None:
        self.queries: list[str] = []
        self.release = asyncio.Event()

    async def search(self, query: str, *, acl: frozenset[str] | None, k: int) -> Sequence[Hit]:
        self.queries.append(query)
        await self.release.wait()
        return [
            Hit("c1", "d1", "file:///ws/tax.py", "tax.py", "VAT = 0.2\n", 0.9),
            Hit("c2", "d2", "file:///ws/app.py", "app.py", "the file itself", 0.8),
        ]


async def test_definitions_the_code_uses_from_other_open_files() -> None:
    source = SnippetSource(limit=3, chars=2000)
    others = [OpenFile("file:///ws/pricing.py", "pricing.py", "python", 1, PRICING)]
    got = source.related("file:///ws/app.py", "app.py", 3, "total = apply_discount(", others, None)
    assert [s.path for s in got] == ["pricing.py"]
    assert got[0].text.startswith("def apply_discount(total, rate):") and "unused_helper" not in got[0].text


async def test_index_hits_arrive_in_the_background_and_stay_for_the_region() -> None:
    index = Index()
    source = SnippetSource(limit=3, chars=2000)
    first = source.related("file:///ws/app.py", "app.py", 3, "def checkout(cart):\n    ", [], index)
    assert first == ()  # the search runs; this suggestion does not wait for it
    index.release.set()
    for _ in range(10):
        await asyncio.sleep(0)
    second = source.related("file:///ws/app.py", "app.py", 4, "def checkout(cart):\n    to", [], index)
    assert [(s.path, s.text) for s in second] == [("tax.py", "VAT = 0.2\n")]  # not the file itself
    third = source.related("file:///ws/app.py", "app.py", 5, "def checkout(cart):\n    tot", [], index)
    assert third == second and len(index.queries) == 1  # same region: no new search, same prompt front
    await source.aclose()


async def test_the_budget_and_the_limit_hold() -> None:
    source = SnippetSource(limit=1, chars=30)
    others = [
        OpenFile("file:///ws/a.py", "a.py", "python", 1, "def alpha():\n    return 'a' * 100\n"),
        OpenFile("file:///ws/b.py", "b.py", "python", 1, "def beta():\n    return 2\n"),
    ]
    got = source.related("file:///ws/m.py", "m.py", 0, "alpha() + beta()", others, None)
    assert len(got) == 1 and len(got[0].text) <= 30
    assert SnippetSource(limit=0, chars=100).related("u", "m.py", 0, "alpha()", others, None) == ()
