"""Assemble the assistant with every capability the settings enable (retrieval, tables, code…).

Each capability plugs in here, once, so every surface gets the same engine.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from core.assistant import Assistant
from core.config import Settings

if TYPE_CHECKING:
    from core.retrieval.rerank import Reranker


def build_assistant(settings: Settings, *, reranker: Reranker | None = None) -> Assistant:
    """The assistant for these settings (``reranker``: the process's shared one, else its own)."""
    retriever = None
    if settings.sources:
        from core.retrieval.owner import retriever_for

        # Through a running `hearth serve` when it owns the embedded store (`hearth ask`, the editor).
        retriever = retriever_for(settings, reranker=reranker)
    assistant = Assistant.from_settings(settings, retriever=retriever)
    from core.code.service import CodeService

    assistant.code = CodeService(assistant)
    if settings.tables:
        from core.tables.service import TableService

        assistant.tables = TableService(settings, assistant.router, assistant.prompts)
    return assistant
