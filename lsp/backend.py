"""Where the language server's model calls go: the in-process core or a remote `hearth serve`."""

from __future__ import annotations

from typing import Protocol

from core.assistant import Assistant
from core.code.service import CodeService
from core.code.workbench import CodeModel


class CodeBackend(Protocol):
    """A mode of the language server: the model the code workbench calls, and what to close at shutdown."""

    label: str

    @property
    def model(self) -> CodeModel:
        """The model calls (explain, generate, tests, ask, workspace context)."""
        ...

    async def aclose(self) -> None:
        """Release connections and models."""
        ...


class InProcessBackend:
    """Runs the core in this process (the default): the assistant's own code service."""

    label = "in-process"

    def __init__(self, assistant: Assistant) -> None:
        self.assistant = assistant
        self.model: CodeModel = assistant.code or CodeService(assistant)

    async def aclose(self) -> None:
        """Free the model."""
        await self.assistant.aclose()
