"""A spinner on stderr for slow CLI steps; silent when stderr is not a terminal (pipes, CI, tests)."""

from __future__ import annotations

from types import TracebackType

from rich.console import Console
from rich.status import Status


class Spinner:
    """``with Spinner("Loading…") as s: …; s.update("Searching…"); s.stop()`` — stop is idempotent.

    The answer streams on stdout; the spinner lives on stderr and is cleared before the first word,
    so piping the answer never captures it.
    """

    def __init__(self, text: str, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self._status: Status | None = None
        self._text = text

    @property
    def active(self) -> bool:
        """Whether the spinner is drawn now."""
        return self._status is not None

    def __enter__(self) -> Spinner:
        if self.console.is_terminal:
            self._status = self.console.status(self._text, spinner="dots")
            self._status.start()
        return self

    def update(self, text: str) -> None:
        """Change the line next to the spinner (no-op once stopped or when not on a terminal)."""
        self._text = text
        if self._status is not None:
            self._status.update(text)

    def stop(self) -> None:
        """Clear the spinner's line; later calls do nothing."""
        if self._status is not None:
            self._status.stop()
            self._status = None

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
