"""What `hearth serve` builds once and hands to every surface it mounts (the composition root's output).

A surface's mount takes a ``Services`` and nothing else: it never imports the server, never opens
its own database, and asks questions only through ``services.intake``::

    def mount(app: web.Application, services: Services) -> None:
        bot = SlackBot(services.settings, services.intake, services.db, digests=services.digests)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from core.audit import AuditLog
from core.config import Settings
from core.db import Database
from core.intake import Intake

if TYPE_CHECKING:
    from core.assistant import Assistant
    from core.digests.service import DigestService
    from core.retrieval.rerank import SharedReranker


@dataclass
class Services:
    """The shared core of one `hearth serve` process."""

    settings: Settings
    db: Database
    intake: Intake
    engine: Callable[[], Assistant | None]  # None while the engine is still starting
    digests: Callable[[], DigestService | None]  # None while digests are disabled or starting
    audit: AuditLog | None = None  # changes that are not questions (digest create/delete) are recorded here
    reranker: SharedReranker | None = None  # the one reranker every retriever of the process is lent
