"""What the digest service reads of the Settings tree, as a protocol that ``core.config.Settings`` satisfies.

The tree holds the digest specs (:mod:`core.digests.config`), so the service, the spec book, the
access rules and the input gathering take "something with these sections" instead of importing
the tree they are part of.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from core.digests.config import DigestSpec
from core.prompts.config import PromptSettings
from core.retrieval.configured import IndexConfigured
from core.tables.config import TableSourceSpec


class _Audience(Protocol):
    @property
    def default_acl(self) -> Sequence[str]: ...


class SlackAudience(_Audience, Protocol):
    """Who reads a Slack destination: everyone's grants, and each channel's own."""

    @property
    def channels(self) -> Mapping[str, Sequence[str]]:
        """Grants per channel id or name."""
        ...


class DingTalkAudience(_Audience, Protocol):
    """Who reads a DingTalk destination, and the named webhooks a digest posts through."""

    @property
    def conversations(self) -> Mapping[str, Sequence[str]]:
        """Grants per conversation (a webhook's name)."""
        ...

    @property
    def webhooks(self) -> Mapping[str, object]:
        """The named group webhooks."""
        ...


class DigestsConfigured(IndexConfigured, Protocol):
    """The sections a digest reads: its specs and admins, the sources and tables, the chats, the templates."""

    @property
    def digests(self) -> Sequence[DigestSpec]:
        """The digests of hearth.yaml."""
        ...

    @property
    def digest_admins(self) -> Sequence[str]:
        """Chat users who may delete any chat-created digest."""
        ...

    @property
    def tables(self) -> Sequence[TableSourceSpec]:
        """Table sources (a digest's table inputs name them)."""
        ...

    @property
    def slack(self) -> SlackAudience:
        """Slack's audiences."""
        ...

    @property
    def dingtalk(self) -> DingTalkAudience:
        """DingTalk's audiences and webhooks."""
        ...

    @property
    def prompts(self) -> PromptSettings:
        """The ``prompts`` section (a team's own templates)."""
        ...
