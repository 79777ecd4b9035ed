"""An AI card that shows the answer as it streams (DingTalk's editable alternative to sessionWebhook text)."""

from __future__ import annotations

import hashlib
import logging
import time
import uuid
from collections.abc import Callable

from bot.dingtalk.message import Incoming
from bot.dingtalk.openapi import FLOW_FAILED, FLOW_FINISHED, OpenAPI

log = logging.getLogger(__name__)


def card_id_for(msg_id: str) -> str:
    """The outTrackId of the AI card that answers the message ``msg_id``: derived from it, not random,
    so the claim's note can name the card before DingTalk creates it. A process that dies between
    creating a random-id card and noting it leaves a card no restart can find, "processing" forever."""
    return "hearth-" + hashlib.sha256(msg_id.encode()).hexdigest()[:32]


class CardStream:
    """Creates one AI card and replaces its content at most every ``interval_s`` seconds."""

    def __init__(
        self,
        api: OpenAPI,
        incoming: Incoming,
        template_id: str,
        *,
        interval_s: float = 0.8,
        clock: Callable[[], float] = time.monotonic,
        out_track_id: str,
    ) -> None:
        self.api = api
        self.incoming = incoming
        self.template_id = template_id
        self.interval_s = interval_s
        self.clock = clock
        # The card's id (card_id_for): the one to create, or one delivered before, continued without creating it.
        self.out_track_id = out_track_id
        self.guid = uuid.uuid4().hex
        self.updates = 0
        self._last = float("-inf")
        self._shown = ""

    async def start(self) -> None:
        """Create and deliver the card (raises DingTalkAPIError when DingTalk refuses)."""
        await self.api.create_card(self.incoming, self.template_id, self.out_track_id)

    async def update(self, text: str) -> None:
        """Show ``text`` so far, unless the last update was too recent."""
        if text == self._shown or self.clock() - self._last < self.interval_s:
            return
        await self.api.stream_card(self.out_track_id, self.guid, text, final=False)
        self._shown, self._last = text, self.clock()
        self.updates += 1

    async def finish(self, text: str, *, failed: bool = False) -> None:
        """Show the final ``text`` and close the stream."""
        await self.api.stream_card(self.out_track_id, self.guid, text, final=True, failed=failed)
        await self.api.set_card_status(self.out_track_id, text, FLOW_FAILED if failed else FLOW_FINISHED)
        self.updates += 1
