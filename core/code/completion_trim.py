"""Where a streamed inline suggestion ends: a blank line, the end of the cursor's block, the text after it.

A base model given a short budget rarely stops by itself; the editor wants the rest of the current
thought, not the next function. :class:`Trimmer` reads the text before and after the cursor once
and then tells, for the suggestion streamed so far, where it must end::

    trimmer = Trimmer(prefix, suffix)
    end = trimmer.cut(streamed)          # None while it may go on
    shown = trimmer.final(streamed)      # cut, without trailing whitespace lines
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_OPENS_BLOCK = re.compile(r"[:{(\[]\s*(#.*)?$")


@dataclass
class Trimmer:
    """Decides where a streamed suggestion ends: a blank line, the end of the cursor's block, the suffix."""

    prefix: str
    suffix: str = ""
    blank_line: bool = True
    block_end: bool = True
    _block_indent: int = field(init=False, default=0)
    _echo: str = field(init=False, default="")

    def __post_init__(self) -> None:
        last = self.prefix.rsplit("\n", 1)[-1]
        if last.strip():  # mid-line: the block is the one this line is in
            indent = _indent(last)
            self._block_indent = indent + 1 if _OPENS_BLOCK.search(last) else indent
        else:  # at the start of a line: its indentation so far, or the block it opens
            previous = next((ln for ln in reversed(self.prefix.split("\n")[:-1]) if ln.strip()), "")
            opens = previous and _OPENS_BLOCK.search(previous)
            self._block_indent = _indent(previous) + 1 if opens else min(len(last), _indent(previous))
        first = next((ln.strip() for ln in self.suffix.split("\n") if ln.strip()), "")
        self._echo = first if len(first) > 3 else ""

    def cut(self, text: str) -> int | None:
        """Where ``text`` (the suggestion so far) must end, or None while it may go on."""
        lines = text.split("\n")
        offset = len(lines[0]) + 1
        for i, ln in enumerate(lines[1:], 1):
            complete = i < len(lines) - 1
            start = offset - 1  # the newline before this line
            if self.blank_line and complete and not ln.strip() and any(x.strip() for x in lines[:i]):
                return start
            if self.block_end and ln.strip() and _indent(ln) < self._block_indent:
                return start
            if self._echo and complete and ln.strip() == self._echo:
                return start
            offset += len(ln) + 1
        return None

    def final(self, text: str) -> str:
        """The suggestion to show: cut where it ends, without trailing whitespace lines."""
        end = self.cut(text + "\n")
        kept = text if end is None else text[:end]
        return kept.rstrip() if "\n" in kept else kept.rstrip("\n")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" \t"))
