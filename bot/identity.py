"""Map a chat user to the ACL tokens retrieval filters on.

Every chat user holds the surface's ``default_acl`` (usually ``public``) plus ``user:<surface>:<id>``,
the tokens configured for them, for their groups, and for the channel they ask in::

    acl_for("slack", "U123", groups=["S01"], channel="C9", default=["public"],
            users={"U123": ["group:eng"]}, groups_map={"S01": ["group:ops"]}, channels_map={})

An answer posted where others read it is built for its *audience* (:func:`audience_of`): the
channel's grants, not the asker's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping


def acl_for(
    surface: str,
    user_id: str,
    *,
    groups: Iterable[str] = (),
    channel: str | None = None,
    default: Iterable[str] = ("public",),
    users: Mapping[str, list[str]] | None = None,
    groups_map: Mapping[str, list[str]] | None = None,
    channels_map: Mapping[str, list[str]] | None = None,
) -> frozenset[str]:
    """The tokens ``user_id`` holds on ``surface`` when asking in ``channel``."""
    tokens = set(default)
    tokens.add(f"user:{surface}:{user_id}")
    tokens.update((users or {}).get(user_id, ()))
    for group in groups:
        tokens.update((groups_map or {}).get(group, ()))
    if channel is not None:
        tokens.update((channels_map or {}).get(channel, ()))
    return frozenset(tokens)


def audience_of(
    channel: str | None,
    *,
    private: bool,
    default: Iterable[str] = ("public",),
    channels_map: Mapping[str, list[str]] | None = None,
) -> frozenset[str] | None:
    """The grants of everyone who sees an answer posted in ``channel``; None when only the asker does.

    A channel's audience holds the surface's ``default_acl`` and the channel's configured grants —
    never an asker's own user or group grants, which the other members may not share.
    """
    if private or channel is None:
        return None
    return frozenset(default) | frozenset((channels_map or {}).get(channel, ()))
