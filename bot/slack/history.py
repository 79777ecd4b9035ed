"""A thread's earlier messages as conversation turns, bounded by a character budget."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import aiohttp
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.web.async_client import AsyncWebClient

from bot import messages
from bot.slack.errors import error_code
from bot.slack.inbound import field, plain_text
from core.contracts import Turn

log = logging.getLogger(__name__)

_SUMMARY_ITEM_CHARS = 80
# conversations.replies pages a thread oldest first, so reaching its latest turns means reading it
# all: pages of the size Slack recommends, up to a bound that only a runaway thread reaches.
_PAGE_LIMIT = 200
_MAX_PAGES = 50


def turns_from(
    raw: Sequence[Mapping[str, object]], *, bot_user_id: str | None, bot_id: str | None, before_ts: str
) -> list[Turn]:
    """Messages older than ``before_ts`` as turns; consecutive messages of one side are joined."""
    turns: list[Turn] = []
    for msg in raw:
        ts = field(msg, "ts")
        if not ts or float(ts) >= float(before_ts):
            continue
        mine = (
            bool(msg.get("bot_id"))
            and (bot_id is None or msg.get("bot_id") == bot_id)
            or (bot_user_id is not None and msg.get("user") == bot_user_id)
        )
        text = plain_text(field(msg, "text"), bot_user_id)
        if (
            not text
            or text in (messages.THINKING,)
            or msg.get("subtype") not in (None, "bot_message", "thread_broadcast")
        ):
            continue
        role = "assistant" if mine else "user"
        if turns and turns[-1].role == role:
            turns[-1] = Turn(role, turns[-1].text + "\n" + text)
        else:
            turns.append(Turn(role, text))
    return turns


def fit(turns: list[Turn], budget_chars: int) -> list[Turn]:
    """Keep the newest turns within ``budget_chars``; older ones become a one-line summary."""
    if sum(len(t.text) + 16 for t in turns) <= budget_chars:
        return list(turns)
    reserve = min(400, budget_chars // 4)  # room for the summary of what was left out
    kept: list[Turn] = []
    used = 0
    for turn in reversed(turns):
        cost = len(turn.text) + 16
        if used + cost > budget_chars - reserve:
            break
        kept.append(turn)
        used += cost
    kept.reverse()
    dropped = turns[: len(turns) - len(kept)]
    asked = [t.text.splitlines()[0][:_SUMMARY_ITEM_CHARS] for t in dropped if t.role == "user" and t.text]
    summary = "; ".join(f"asked “{q}”" for q in asked) or "earlier answers"
    note = messages.SLACK_HISTORY_SUMMARY.format(count=len(dropped), summary="{summary}")
    room = max(1, reserve - len(note))
    if len(summary) > room:
        summary = summary[: room - 1] + "…"
    return [Turn("user", note.replace("{summary}", summary)), *kept]


async def thread_history(
    client: AsyncWebClient,
    channel: str,
    thread_ts: str,
    *,
    before_ts: str,
    bot_user_id: str | None,
    bot_id: str | None,
    budget_chars: int,
) -> list[Turn]:
    """The thread's turns before ``before_ts`` (``conversations.replies``), newest kept within the budget."""
    raw = await _thread_messages(client, channel, thread_ts, before_ts)
    return fit(turns_from(raw, bot_user_id=bot_user_id, bot_id=bot_id, before_ts=before_ts), budget_chars)


async def _thread_messages(
    client: AsyncWebClient, channel: str, thread_ts: str, before_ts: str
) -> list[Mapping[str, object]]:
    """Every message of the thread before ``before_ts``, oldest first, following the cursor."""
    raw: dict[str, Mapping[str, object]] = {}  # by ts: a page may repeat the parent message
    cursor: str | None = None
    for _ in range(_MAX_PAGES):
        try:
            resp = await client.conversations_replies(
                channel=channel, ts=thread_ts, latest=before_ts, limit=_PAGE_LIMIT, cursor=cursor
            )
        except (SlackClientError, aiohttp.ClientError, TimeoutError, ValueError) as exc:
            # History only helps: a failed read (even a body that is not JSON) answers with what was read.
            log.warning(
                "conversations.replies failed for %s/%s (%s); answering with %d earlier message(s)",
                channel,
                thread_ts,
                error_code(exc) if isinstance(exc, SlackApiError) else f"{type(exc).__name__}: {exc}",
                len(raw),
            )
            break
        for msg in resp.get("messages") or []:
            raw[field(msg, "ts")] = msg
        metadata = resp.get("response_metadata") or {}
        cursor = metadata.get("next_cursor") if isinstance(metadata, Mapping) else None
        if not resp.get("has_more") or not cursor:
            break
    else:
        log.warning(
            "thread %s/%s is longer than %d messages; its history is the first ones read",
            channel,
            thread_ts,
            _PAGE_LIMIT * _MAX_PAGES,
        )
    return sorted(raw.values(), key=lambda m: float(field(m, "ts") or 0))
