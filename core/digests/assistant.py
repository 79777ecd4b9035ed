"""What a digest run needs from the assistant: its prompts, a summary stream, and table queries.

``core.assistant.Assistant`` is one; tests hand in an Assistant over a ``FakeBackend``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

from core.contracts import Answer, Delta, Request
from core.prompts.registry import PromptRegistry


class TableQueries(Protocol):
    """Runs SQL a person wrote, through the table guard (``core.tables.service.TableService``)."""

    async def query(self, source: str, sql: str) -> Answer:
        """The result as an Answer whose ``table`` holds the rows; SQLRejected when the guard refuses."""
        ...


class DigestAssistant(Protocol):
    """The assistant as digests use it."""

    @property
    def prompts(self) -> PromptRegistry:
        """The template library (digest templates are checked against it at start)."""
        ...

    @property
    def tables(self) -> TableQueries | None:
        """Table queries, or None when no table source is configured."""
        ...

    def complete_stream(
        self, template: str, request: Request, *, max_tokens: int | None = None, **variables: object
    ) -> AsyncIterator[Delta | Answer]:
        """Render ``template`` with ``variables`` and stream the model's output, ending with the Answer."""
        ...

    async def aclose(self) -> None:
        """Release the engine."""
        ...
