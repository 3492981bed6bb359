"""Waiting for events instead of for time.

The machine running the suite may be loaded by anything: a test that sleeps a guessed time and
then asserts what should have happened meanwhile fails whenever the guess is short. A test
waits instead for the condition itself, with a timeout generous enough to mean "it will never
happen", and fails with what it was waiting for.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

#: Long enough that reaching it means the event will not come, on any machine the suite runs on.
GENEROUS_TIMEOUT_S = 60.0
POLL_S = 0.01


def wait_until(predicate: Callable[[], T], timeout_s: float = GENEROUS_TIMEOUT_S,
               what: str = "a condition") -> T:
    """The first truthy value of ``predicate()``, polled until ``timeout_s`` has passed.

    >>> wait_until(lambda: 3, what="three")
    3
    >>> wait_until(lambda: None, timeout_s=0.05, what="nothing")
    Traceback (most recent call last):
    AssertionError: timed out after 0.05 s waiting for nothing
    """
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(POLL_S)


def ready_address(ready_file: Path, timeout_s: float = GENEROUS_TIMEOUT_S) -> str:
    """The address a runner listens on, from its ``--ready`` file (PID, then address), once
    it exists: with ``--listen tcp://127.0.0.1:0`` the OS chose the port."""

    def address() -> str | None:
        if not ready_file.exists():
            return None
        lines = ready_file.read_text().splitlines()
        return lines[1] if len(lines) > 1 and lines[1] else None

    return wait_until(address, timeout_s, what=f"{ready_file.name} to name an address")
