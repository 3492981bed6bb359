"""Helpers shared by the subcommands: consoles and progress display."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console

from hwsched.progress import Progress

#: Width of tables written to a pipe or file (a terminal's own width is used when there is one).
PIPE_WIDTH = 120


def stdout_console(markup: bool = True) -> Console:
    """The console for results; ``markup=False`` where every string printed is data."""
    console = Console(highlight=False, markup=markup)
    if not console.is_terminal:
        console = Console(highlight=False, markup=markup, width=PIPE_WIDTH)
    return console


def stderr_console() -> Console:
    return Console(stderr=True, highlight=False)


@contextmanager
def progress_status(console: Console, first: str) -> Iterator[Progress]:
    """A spinner on stderr whose text the library updates through the yielded callable."""
    with console.status(first) as status:
        yield lambda message: status.update(f"{message}…")


# -- argument types shared by the subcommands (argparse turns these errors into usage + exit 2)
def positive_int(text: str) -> int:
    return _whole_number(text, 1)


def non_negative_int(text: str) -> int:
    return _whole_number(text, 0)


def _whole_number(text: str, least: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < least:
        raise argparse.ArgumentTypeError(f"{value} must be at least {least}")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def name_list(text: str) -> list[str]:
    """``a,b,c`` -> ``["a", "b", "c"]``; an empty item is an error."""
    names = [name.strip() for name in text.split(",")]
    if not all(names):
        raise argparse.ArgumentTypeError(f"{text!r}: empty name in comma-separated list")
    return names


def int_list(text: str) -> list[int]:
    try:
        return [int(item) for item in name_list(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give whole numbers, e.g. 10,17") from None


def stages_option(text: str) -> str | int:
    """``--stages``: ``auto`` or a whole number of stages >= 1."""
    from hwsched.schedule.records import AUTO_STAGES

    if text == AUTO_STAGES:
        return text
    try:
        return positive_int(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: give 'auto' or a whole number of stages >= 1"
        ) from None


def check_hardware(platforms: list[str] | tuple[str, ...], link: str | None) -> None:
    """Load every named board and the link now: a typo or a bad descriptor file is one line
    in a second, not after minutes of building and converting the model."""
    from hwsched.hardware import load_host, load_link, load_platform

    for name in platforms:
        load_host(load_platform(name))
    if link:
        load_link(link)
