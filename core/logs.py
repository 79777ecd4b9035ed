"""Process-wide log hardening: no secret in any log line, no disk filled by a repeated error.

:func:`harden_logging` (called once by the CLI and by `hearth serve`'s log setup) makes every
log record of the process pass through :func:`core.redact.redact` (the message and the
traceback, whoever wrote the record: Hearth, aiohttp, httpx, slack_sdk …), and puts a
:class:`RepeatLimit` on each root handler: a warning or error repeated more than a handful of
times a minute is dropped, and the next one written says how many were left out. A flood of
failing clients (the red team made the server write 118 MB of errors in 40 s) costs a few lines.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from core import metrics
from core.redact import redact


class RepeatLimit(logging.Filter):
    """Drops a warning or error repeated more than ``burst`` times in ``window_s`` (per logger and
    message template); the next one let through says how many were dropped."""

    def __init__(
        self, burst: int = 10, window_s: float = 60.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__()
        self.burst, self.window_s, self._clock = burst, window_s, clock
        self._seen: dict[tuple[str, int, str], list[float]] = {}  # key -> [window start, count, dropped]
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        """Whether ``record`` is written."""
        if record.levelno < logging.WARNING:
            return True
        template = getattr(record, "_hearth_template", record.msg)  # before redaction merged the args in
        key = (record.name, record.levelno, str(template)[:200])
        now = self._clock()
        with self._lock:
            state = self._seen.get(key)
            if state is None or now - state[0] >= self.window_s:
                dropped = int(state[2]) if state is not None else 0
                if len(self._seen) > 10_000:  # many distinct messages: forget the old windows
                    self._seen.clear()
                self._seen[key] = [now, 1, 0]
                if dropped:
                    record.msg = f"{record.getMessage()} ({dropped} more like this were not logged)"
                    record.args = None
                return True
            state[1] += 1
            if state[1] <= self.burst:
                return True
            state[2] += 1
        metrics.LOG_SUPPRESSED.labels(record.levelname).inc()
        return False


_redacting = False


def install_redaction() -> None:
    """Make every log record of this process pass through :func:`core.redact.redact` (once)."""
    global _redacting
    if _redacting:
        return
    _redacting = True
    make_record = logging.getLogRecordFactory()

    def redacted(*args: object, **kwargs: object) -> logging.LogRecord:
        record = make_record(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string: the handler reports it as usual
            return record
        record._hearth_template = record.msg  # what RepeatLimit groups repeats by
        record.msg, record.args = redact(message), None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        return record

    logging.setLogRecordFactory(redacted)


def harden_logging() -> None:
    """Redact every log record (once per process) and rate-limit repeats on each root handler."""
    install_redaction()
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RepeatLimit) for f in handler.filters):
            handler.addFilter(RepeatLimit())
