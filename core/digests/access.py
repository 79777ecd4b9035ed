"""Who may read what a digest posts: its inputs must be readable by every destination's audience.

A digest posted to a channel is read by everyone in it, so it may only gather documents and
tables that the channel's audience may read: the surface's ``default_acl`` plus the grants
configured for that destination (``slack.channels`` for a Slack channel, by id or by the name
used in ``post_to``; ``dingtalk.conversations`` for a DingTalk webhook's name). It is checked
when a digest is created and again before each run.
"""

from __future__ import annotations

from core.config import Settings
from core.digests.config import DigestSpec


def audience(settings: Settings, surface: str, destination: str) -> frozenset[str]:
    """The grants of everyone who reads ``destination`` on ``surface``."""
    if surface == "slack":
        chat = settings.slack
        return frozenset(chat.default_acl) | frozenset(chat.channels.get(destination, ()))
    if surface == "dingtalk":
        talk = settings.dingtalk
        return frozenset(talk.default_acl) | frozenset(talk.conversations.get(destination, ()))
    return frozenset({"public"})


def unreadable(spec: DigestSpec, settings: Settings) -> list[str]:
    """One sentence per input that a destination's audience may not read (empty: the digest may post)."""
    docs = spec.inputs.docs
    wanted = set(docs.sources) if docs is not None and docs.sources else None
    inputs = [
        (f"docs source '{s.name}'", frozenset(s.acl))
        for s in settings.sources
        if docs is not None and (wanted is None or s.name in wanted)
    ]
    table_acl = {t.name: frozenset(t.acl) for t in settings.tables}
    inputs += [
        (f"table source '{t.source}'", table_acl.get(t.source, frozenset())) for t in spec.inputs.tables
    ]
    problems = []
    for surface, destination in spec.destinations:
        readers = audience(settings, surface, destination)
        for what, acl in inputs:
            if not acl & readers:
                problems.append(
                    f"{what} may not be read by everyone in {surface}:{destination} "
                    f"(they hold {', '.join(sorted(readers))})"
                )
    return problems
