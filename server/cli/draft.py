"""The answer as it streams, shown on a terminal and erased once the final answer is known.

The verifier (core/grounding) may drop or re-cite sentences after the model has written them, so
what streams is a draft. On a terminal the draft is drawn as it arrives (``rich.live.Live``,
transient) and cleared when the answer is done; the command then prints the checked answer. A
pipe never gets the draft, only the checked answer, so a script that captures ``hearth ask`` reads
exactly the text the sources support, once::

    with Draft() as draft:
        async for event in events:
            draft.add(delta.text)
    click.echo(answer.text)
"""

from __future__ import annotations

from types import TracebackType

from rich.console import Console
from rich.live import Live
from rich.text import Text


class Draft:
    """``with Draft() as d: d.add("…")`` — drawn on a terminal only, cleared by :meth:`stop`."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console()
        self.text = ""
        self._live: Live | None = None
        self._stopped = False

    @property
    def shown(self) -> bool:
        """Whether the draft is on the screen now."""
        return self._live is not None

    def __enter__(self) -> Draft:
        return self

    def add(self, text: str) -> None:
        """Append streamed text to the draft, drawn on a terminal from the first piece on (not
        before: the spinner, on the same screen, is stopped by then)."""
        self.text += text
        if self._stopped or not self.console.is_terminal:
            return
        if self._live is None:
            self._live = Live(
                Text(self.text),
                console=self.console,
                transient=True,
                refresh_per_second=8,
                vertical_overflow="crop",
            )
            self._live.start()
        else:
            self._live.update(Text(self.text))

    def stop(self) -> None:
        """Erase the draft from the screen; later calls (and later text) draw nothing."""
        self._stopped = True
        if self._live is not None:
            self._live.stop()
            self._live = None

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
