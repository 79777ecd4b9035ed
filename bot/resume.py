"""The loop that finishes answers a dead process left unfinished, shared by the chat surfaces.

Each surface notes what it needs with its claim (``Database.note``) and knows how to finish one
(``sweep``); this runs the sweeps: once the engine is ready (at startup), then every ``every_s``
seconds, which also catches a lease that ran out on another host::

    task = asyncio.create_task(sweep_forever(resumer.sweep, ready=lambda: intake.engine is not None,
                                             every_s=20, swept=resumer.swept))
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 3  # processes a question may take down before it is given up
MAX_AGE_S = 3600.0  # an older question is not answered any more: its asker is told to ask again


async def sweep_forever(
    sweep: Callable[[], Awaitable[int]],
    *,
    ready: Callable[[], bool],
    every_s: float,
    swept: asyncio.Event | None = None,
) -> None:
    """Call ``sweep`` whenever ``ready()``, every ``every_s`` seconds; set ``swept`` after each."""
    while True:
        if not ready():
            await asyncio.sleep(min(1.0, every_s))
            continue
        try:
            await sweep()
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 — the next round tries again
            log.exception("resuming unfinished answers failed")
        if swept is not None:
            swept.set()
        await asyncio.sleep(every_s)
