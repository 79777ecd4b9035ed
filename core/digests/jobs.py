"""The function APScheduler stores by reference, and the registry it finds its service in.

Jobs live in a database, so they hold only picklable data: this module-level function's
import path and ``(db_key, digest name)``. The running service registers itself under its
database's key while it leads; a job that fires with no service registered is skipped (its run
record is claimed by whoever runs it next).
"""

from __future__ import annotations

import hashlib
import logging
from typing import TYPE_CHECKING

import sqlalchemy as sa

if TYPE_CHECKING:
    from core.digests.service import DigestService

log = logging.getLogger(__name__)

_ACTIVE: dict[str, DigestService] = {}


def db_key(url: str) -> str:
    """A stable, password-free key for a database URL."""
    safe = sa.engine.make_url(url).render_as_string(hide_password=True)
    return hashlib.sha256(safe.encode()).hexdigest()[:16]


def register(key: str, service: DigestService) -> None:
    """Route jobs of database ``key`` to ``service``."""
    _ACTIVE[key] = service


def unregister(key: str, service: DigestService) -> None:
    """Stop routing jobs to ``service`` (only if it is the registered one)."""
    if _ACTIVE.get(key) is service:
        del _ACTIVE[key]


async def fire_digest(key: str, name: str) -> None:
    """Run the scheduled digest ``name`` (called by APScheduler)."""
    service = _ACTIVE.get(key)
    if service is None:
        log.warning("digest %s fired but no digest service is running for its database; skipped", name)
        return
    try:
        await service.fire(name)
    except Exception:
        # APScheduler would log this too, but without the digest's name.
        log.exception("digest %s: scheduled run failed", name)
