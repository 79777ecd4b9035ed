"""Fire-time arithmetic on APScheduler cron triggers (the run-record key is the scheduled fire time)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from apscheduler.triggers.cron import CronTrigger

_ONE_MICROSECOND = timedelta(microseconds=1)


def utcnow() -> datetime:
    """The current time, timezone-aware UTC (patched by time-machine in tests)."""
    return datetime.now(UTC)


def next_fire(trigger: CronTrigger, now: datetime) -> datetime | None:
    """The first fire time strictly after ``now``."""
    fire: datetime | None = trigger.get_next_fire_time(None, now + _ONE_MICROSECOND)
    return fire


def last_fire(trigger: CronTrigger, now: datetime) -> datetime | None:
    """The latest fire time at or before ``now`` (None when the cron never fired in the last ~4 years).

    APScheduler 3 does not hand a job its scheduled time, and with ``coalesce=True`` the one run it
    makes after downtime stands for the latest missed time, which is exactly this value.
    """
    window = timedelta(minutes=2)
    while window <= timedelta(days=1500):
        fire: datetime | None = trigger.get_next_fire_time(None, now - window)
        if fire is not None and fire <= now:
            while True:
                later: datetime | None = trigger.get_next_fire_time(fire, fire + _ONE_MICROSECOND)
                if later is None or later > now:
                    return fire
                fire = later
        window *= 4
    return None


def fire_key(when: datetime) -> str:
    """The canonical text of a fire time in run records: UTC, second precision, ISO 8601."""
    return when.astimezone(UTC).replace(microsecond=0).isoformat()
