"""What the surfaces (bot/, lsp/) may use from the core: every name here, nothing else.

A surface translates platform events into an ``Ask`` for the ``Intake`` and renders the events it
gets back (``Delta``, ``Answer``, ``Refusal``). ``tests/unit/test_core_api.py`` checks that bot/ and
lsp/ import from ``core`` only names listed in ``__all__``, so widening what a surface reaches is a
visible change to this file. The server (``server/``) is the composition root and the operator's
CLI: it builds the core from its parts and may reach further.
"""

from __future__ import annotations

from core.assistant import Assistant
from core.code.completion import CHARS_PER_TOKEN, Completer, cursor_window
from core.code.config import CompletionSettings
from core.code.context import RUNNABLE, CodeContext, build_context, definitions, language_of
from core.code.generation import GenerationTarget
from core.code.merge import MergedTests, merge_tests
from core.code.sandbox import Sandbox
from core.code.service import CodeService
from core.code.testrun import Failure, PytestRun
from core.code.workbench import CodeModel, CodeWorkbench, Fix, Progress, WrittenTests
from core.config import DatabaseSettings, DingTalkSettings, Settings, SlackSettings
from core.contracts import (
    Answer,
    Ask,
    Cell,
    Citation,
    Code,
    Completion,
    Delta,
    Hit,
    Kind,
    Request,
    Retriever,
    Snippet,
    Turn,
)
from core.db import Database, metadata, seen_events
from core.digests.access import Readers
from core.digests.commands import handle_command
from core.digests.service import DigestService
from core.errors import BackendError, BackendUnavailable, ConfigError, HearthError, InputError
from core.intake import Intake
from core.intake_metrics import METRICS
from core.jsontypes import load_json
from core.llm.base import Priority, Usage
from core.metrics import FEEDBACK_VOTES
from core.refusals import ENGLISH, Reason, Refusal, Refused, refusal_for, sentence
from core.render import SourceGroup, grouped_sources, markdown_table
from core.retrieval.config import SourceSpec
from core.retrieval.embedders import Embedder
from core.retrieval.search import DocsRetriever
from core.retrieval.sync import Indexer
from core.services import Services
from core.tables.render import text_table

__all__ = [
    # the front door
    "Intake",
    "Services",
    "Ask",
    "Kind",
    "Code",
    "Request",
    "Turn",
    "Delta",
    "Answer",
    "Citation",
    "Hit",
    "Cell",
    "Refusal",
    "Reason",
    "Refused",
    "ENGLISH",
    "refusal_for",
    "sentence",
    "Priority",
    "Usage",
    "METRICS",
    "FEEDBACK_VOTES",
    # rendering
    "markdown_table",
    "grouped_sources",
    "SourceGroup",
    "text_table",
    # configuration, state, errors
    "Settings",
    "SlackSettings",
    "DingTalkSettings",
    "DatabaseSettings",
    "Database",
    "metadata",
    "seen_events",
    "HearthError",
    "ConfigError",
    "InputError",
    "BackendError",
    "BackendUnavailable",
    # untrusted JSON (a platform's callback body)
    "load_json",
    # digests from chat
    "DigestService",
    "handle_command",
    "Readers",
    # the editor's workspace-side use cases (they run where the files are)
    "Assistant",
    "CodeService",
    "CodeWorkbench",
    "CodeModel",
    "CodeContext",
    "GenerationTarget",
    "MergedTests",
    "merge_tests",
    "Fix",
    "Progress",
    "WrittenTests",
    "PytestRun",
    "Failure",
    "Sandbox",
    "RUNNABLE",
    "build_context",
    "language_of",
    "definitions",
    # inline completion
    "Completer",
    "Completion",
    "CompletionSettings",
    "Snippet",
    "CHARS_PER_TOKEN",
    "cursor_window",
    "Retriever",
    "DocsRetriever",
    "Embedder",
    "Indexer",
    "SourceSpec",
]
