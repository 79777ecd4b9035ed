"""Exactly-once answers: a platform message is claimed before it is answered and finished after."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from core.db import HOLDER, Database, holder_gone, process_holder


@pytest.fixture
async def db(tmp_path: Path):
    database = Database(f"sqlite:///{tmp_path / 'state.db'}")
    yield database
    await database.aclose()


def dead_holder() -> str:
    """The holder string of a process of this host that has exited."""
    code = "from core.db import process_holder; print(process_holder())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return out.stdout.strip()


async def test_a_live_claim_and_a_finished_one_turn_deliveries_away(db: Database) -> None:
    assert await db.claim("slack", "Ev1")
    assert not await db.claim("slack", "Ev1")  # being answered (this process is alive)
    assert not await db.claim("slack", "Ev1", "another-host:1:1")  # nor by another replica
    assert await db.finish("slack", "Ev1")
    assert not await db.claim("slack", "Ev1")  # answered: every later delivery is a duplicate
    assert not await db.finish("slack", "Ev1")  # and it cannot be finished twice
    assert await db.claim("dingtalk", "Ev1")  # surfaces do not share ids


async def test_a_released_or_expired_claim_is_taken_over(db: Database) -> None:
    assert await db.claim("slack", "Ev2")
    assert await db.release("slack", "Ev2")  # the surface failed to post
    assert await db.claim("slack", "Ev2", "replica-b:7:1")
    assert await db.claim("slack", "Ev3", "replica-b:7:1", lease_s=0.05)
    assert not await db.claim("slack", "Ev3")
    await asyncio.sleep(0.1)  # replica-b died: its lease ran out
    assert await db.claim("slack", "Ev3")
    assert not await db.finish("slack", "Ev3", "replica-b:7:1")  # the old holder lost it


async def test_a_claim_of_a_dead_process_on_this_host_is_taken_over_at_once(db: Database) -> None:
    gone = dead_holder()
    assert gone.startswith(socket.gethostname() + ":") and holder_gone(gone)
    assert not holder_gone(HOLDER) and HOLDER == process_holder()
    assert not holder_gone("elsewhere:1:1")  # another host: only its lease can tell
    assert await db.claim("slack", "Ev4", gone, lease_s=3600)
    assert await db.claim("slack", "Ev4")  # a restart answers what the killed process had claimed
    assert os.getpid() == int(HOLDER.split(":")[1])


async def test_concurrent_deliveries_have_one_winner(db: Database) -> None:
    wins = await asyncio.gather(*(db.claim("slack", "Ev5", f"h{i}:1:1") for i in range(12)))
    assert wins.count(True) == 1
