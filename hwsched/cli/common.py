"""Helpers shared by the subcommands: consoles and progress display."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console

#: Width of tables written to a pipe or file (a terminal's own width is used when there is one).
PIPE_WIDTH = 120


def stdout_console() -> Console:
    console = Console(highlight=False)
    if not console.is_terminal:
        console = Console(highlight=False, width=PIPE_WIDTH)
    return console


def stderr_console() -> Console:
    return Console(stderr=True, highlight=False)


@contextmanager
def progress_status(console: Console, first: str) -> Iterator[Callable[[str], None]]:
    """A spinner on stderr whose text the library updates through the yielded callable."""
    with console.status(first) as status:
        yield lambda message: status.update(f"{message}…")
