"""Who may read what a digest posts: its inputs must be readable by every destination's audience.

A digest posted to a channel is read by everyone in it, so it may only gather documents and
tables that the channel's audience may read: the surface's ``default_acl`` plus the grants
configured for that destination (``slack.channels`` for a Slack channel, by id or by the name
used in ``post_to``; ``dingtalk.conversations`` for a DingTalk webhook's name). It is checked
when a digest is created and again before each run.

A chat input (``inputs.chat``: channel X's messages) may be posted into destination Y only when
everyone who can see Y could see X: Y is X itself, or X is a public channel (the whole workspace
reads it), or every member of Y is a member of X. The chat surface that reads the history tells
who reads a channel (:class:`ChannelReaders`); without it, or for a destination that is not on the
same chat (a DingTalk group reading a Slack channel), the digest is refused. A digest created by
one of ``digest_admins`` may post chat where it likes (the admin answers for it). A channel Hearth
cannot read at all is no problem: nothing of it is posted (the digest notes it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from core.digests.config import DigestSpec
from core.digests.configured import DigestsConfigured


@dataclass(frozen=True)
class Readers:
    """Who can read a chat channel."""

    everyone: bool = False  # a public channel: the whole workspace
    members: frozenset[str] = frozenset()
    unreadable: str | None = None  # why Hearth cannot tell (it cannot read the channel)


@runtime_checkable
class ChannelReaders(Protocol):
    """Tells who can read a chat channel; the chat-history reader of ``inputs.chat`` implements it."""

    async def readers(self, channel: str) -> Readers:
        """Who can read ``channel`` ('#name' or an id)."""
        ...


def audience(settings: DigestsConfigured, surface: str, destination: str) -> frozenset[str]:
    """The grants of everyone who reads ``destination`` on ``surface``."""
    if surface == "slack":
        chat = settings.slack
        return frozenset(chat.default_acl) | frozenset(chat.channels.get(destination, ()))
    if surface == "dingtalk":
        talk = settings.dingtalk
        return frozenset(talk.default_acl) | frozenset(talk.conversations.get(destination, ()))
    return frozenset({"public"})


def unreadable(spec: DigestSpec, settings: DigestsConfigured) -> list[str]:
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


async def problems(
    spec: DigestSpec, settings: DigestsConfigured, reader: object, *, creator: str | None
) -> list[str]:
    """Every reason ``spec`` may not post what it gathers: its docs and tables, then its chat input.

    ``reader`` is the digest's chat-history reader (a :class:`ChannelReaders` when it can tell who
    reads a channel); ``creator`` who made the digest (None: hearth.yaml).
    """
    found = unreadable(spec, settings)
    chat = spec.inputs.chat
    if chat is None or not chat.channels or (creator is not None and creator in settings.digest_admins):
        return found
    readers = reader if isinstance(reader, ChannelReaders) else None
    for channel in chat.channels:
        for surface, destination in spec.destinations:
            why = await _chat_problem(readers, channel, surface, destination)
            if why:
                found.append(
                    f"the messages of {channel} may not be posted to {surface}:{destination} ({why})"
                )
    return found


async def _chat_problem(
    readers: ChannelReaders | None, channel: str, surface: str, destination: str
) -> str | None:
    """Why ``channel``'s messages may not go to ``destination`` (None: they may)."""
    if surface == "slack" and channel.lstrip("#") == destination.lstrip("#"):
        return None  # into the channel itself
    if readers is None:
        return "no chat reader can tell who reads the channel"
    source = await readers.readers(channel)
    if source.unreadable is not None:
        return None  # Hearth cannot read it: nothing of it is posted
    if source.everyone:
        if surface == "slack":
            return None
        return "the people there are not members of the Slack workspace Hearth can check"
    if surface != "slack":
        return "the channel is private and the people there are not Slack members Hearth can check"
    target = await readers.readers(destination)
    if target.unreadable is not None:
        return f"Hearth cannot tell who reads it: {target.unreadable}"
    if target.everyone:
        return "the channel is private and the destination is public"
    outside = target.members - source.members
    if outside:
        return f"{len(outside)} member(s) there are not in the channel"
    return None
