"""A cap's maker is its pid *and* its start time, so a dead maker's reused pid neither keeps
its caps alive nor collides with them.

Failed before: caps were named by the maker's pid alone and swept only when no process had
that pid, so a cap left by a SIGKILLed emulator whose pid a later process took stayed (and
that process, making a cap of the same name, failed with "File exists")."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from hwsched.runtime import cpucap
from hwsched.runtime.cpucap import cap_name, is_orphan, start_ticks, sweep_orphans
from tests.test_cpucap import controller_or_skip

SLEEPER = [sys.executable, "-c", "import sys; sys.stdin.read()"]


def _stat_start(pid: int) -> int:
    """Field 22 of /proc/PID/stat, read independently of the code under test."""
    text = Path(f"/proc/{pid}/stat").read_text()
    return int(text[text.rindex(")") + 2:].split(" ")[19])


def test_a_living_maker_is_its_pid_and_start_time():
    child = subprocess.Popen(SLEEPER, stdin=subprocess.PIPE)
    try:
        started = _stat_start(child.pid)
        assert start_ticks(child.pid) == started
        assert not is_orphan(cap_name("stage", child.pid, 0))
        assert not is_orphan(f"{cpucap.GROUP_PREFIX}-stage-{child.pid}-t{started}-7")
        # the same pid, another start: the pid was reused after its maker died
        assert is_orphan(f"{cpucap.GROUP_PREFIX}-stage-{child.pid}-t{started + 1}-7")
        assert is_orphan(f"{cpucap.GROUP_PREFIX}-board-1-{child.pid}-t{started - 1}-0")
    finally:
        child.stdin.close()
        child.wait()
    assert start_ticks(child.pid) is None or start_ticks(child.pid) != started
    assert is_orphan(f"{cpucap.GROUP_PREFIX}-stage-{child.pid}-t{started}-7")


def test_names_before_start_times_keep_the_pid_rule():
    me = os.getpid()
    assert not is_orphan(f"{cpucap.GROUP_PREFIX}-stage-{me}-3")
    assert not is_orphan("not-a-cap")


def test_a_cap_whose_pid_was_reused_is_swept():
    controller = controller_or_skip()
    home = controller.own_cgroup()
    me = os.getpid()
    stale = home / f"{cpucap.GROUP_PREFIX}-stage-{me}-t{_stat_start(me) + 1}-0"
    mine = home / cap_name("stage", me, 10**6)
    stale.mkdir()
    mine.mkdir()
    try:
        removed = sweep_orphans(home)
        assert stale in removed and mine not in removed
        assert not stale.exists() and mine.exists()
    finally:
        for path in (stale, mine):
            if path.exists():
                path.rmdir()
