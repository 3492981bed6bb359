"""The emulation supervisor notices a child's end by the event, not by its fallback timeout
(issue 13's review): each wait says whether a child's end woke it, and the test ends its
child only while the supervisor holds a pidfd on it (seen in ``/proc/self/fd``), so a wait
woken by anything but that end, or a sleep in its place, fails; no timing is asserted. The
pidfd may be numbered 1024 or more (a supervisor holding many descriptors), which
``select.select`` refused with a ValueError the supervisor did not catch."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from hwsched.runtime.emulate import EmulationConfig, _Processes, _supervise

#: Both tests watch the supervisor's pidfd; without pidfds it sleeps on its fallback instead.
pytestmark = pytest.mark.skipif(not hasattr(os, "pidfd_open"),
                                reason="this kernel or Python has no pidfd_open")

#: A wait's timeout far beyond a child's end on a loaded machine: reaching it fails the test.
LONG_WAIT_S = 60.0
#: How long the watcher looks for the supervisor's pidfd before ending the child anyway.
WATCH_LIMIT_S = 30.0
#: The first descriptor ``select.select`` cannot take (FD_SETSIZE).
SELECT_LIMIT_FD = 1024


def _pidfds() -> list[int]:
    """This process's open pidfds."""
    found = []
    for name in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{name}") == "anon_inode:[pidfd]":
                found.append(int(name))
        except OSError:  # closed meanwhile (the listing's own descriptor, a pidfd)
            pass
    return found


class _EndWhenWatched(threading.Thread):
    """Closes the child's stdin (it then exits 0) once this process holds a pidfd, i.e. the
    supervisor is inside a wait on it; records the pidfd numbers it saw."""

    def __init__(self, child: subprocess.Popen) -> None:
        super().__init__(daemon=True)
        self.child, self.seen = child, []

    def run(self) -> None:
        limit = time.monotonic() + WATCH_LIMIT_S
        while not self.seen and time.monotonic() < limit:
            self.seen = _pidfds()
            time.sleep(0.001)  # polling a condition, not standing in for one
        self.child.stdin.close()  # type: ignore[union-attr]


def _supervised_child(tmp_path: Path) -> tuple[_Processes, subprocess.Popen]:
    processes = _Processes(tmp_path)
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                             stdin=subprocess.PIPE)
    processes.children["child"] = child
    return processes, child


@pytest.fixture
def descriptors_past_select():
    """The next descriptor this process opens is numbered ``SELECT_LIMIT_FD`` or more."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = SELECT_LIMIT_FD + 64
    if soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            pytest.skip(f"RLIMIT_NOFILE hard limit {hard} < {needed}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    held = []
    try:
        while not held or held[-1] < SELECT_LIMIT_FD:
            held.append(os.open(os.devnull, os.O_RDONLY))
        os.close(held.pop())  # the lowest free number is now this one, >= 1024
        yield held[-1] + 1
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_a_wait_on_a_pidfd_past_1023_is_woken_by_the_childs_end(tmp_path,
                                                                 descriptors_past_select):
    processes, child = _supervised_child(tmp_path)
    watcher = _EndWhenWatched(child)
    watcher.start()
    try:
        woken = processes.wait_for_exit(LONG_WAIT_S)
    finally:
        watcher.join(WATCH_LIMIT_S)
        child.kill()
        child.wait()
    assert watcher.seen and min(watcher.seen) >= SELECT_LIMIT_FD, watcher.seen
    assert woken
    assert child.returncode == 0  # it ended as told, not by the kill


def test_the_supervisor_notices_a_childs_end_by_the_event(tmp_path):
    """One loop pass: the first wait is woken by the end; a loop that slept its timeout, or
    ticked, would show a wait not woken (or more than one)."""
    processes, child = _supervised_child(tmp_path)
    waits: list[bool] = []
    wait_for_exit = processes.wait_for_exit

    def counted(timeout_s: float) -> bool:  # the real wait, its answers recorded
        waits.append(wait_for_exit(timeout_s))
        return waits[-1]

    processes.wait_for_exit = counted  # type: ignore[method-assign]
    watcher = _EndWhenWatched(child)
    watcher.start()
    try:
        _supervise(processes, EmulationConfig(), 0, lambda _: None, idle_s=LONG_WAIT_S)
    finally:
        watcher.join(WATCH_LIMIT_S)
        child.kill()
        child.wait()
    assert watcher.seen
    assert waits == [True]
