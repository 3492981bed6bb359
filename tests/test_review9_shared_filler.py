"""A board's stages share one cap and one filler: the filler must keep the cap steady while
any of them runs, not only while the first one added does."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from test_cpucap import controller_or_skip

from hwsched.runtime.cpucap import StageCaps

WAIT_S = 60.0
SLEEPER = [sys.executable, "-c", "import sys; sys.stdin.readline()"]


def _idle_members(controller, pid: int) -> list[int]:
    """The SCHED_IDLE processes (fillers) in ``pid``'s cgroup."""
    procs = (controller.own_cgroup(pid) / "cgroup.procs").read_text().split()
    idle = []
    for other in map(int, procs):
        try:
            if os.sched_getscheduler(other) == os.SCHED_IDLE:
                idle.append(other)
        except OSError:
            pass
    return idle


def test_the_boards_filler_outlives_the_first_stage_while_another_runs():
    controller = controller_or_skip()
    first, second = (subprocess.Popen(SLEEPER, stdin=subprocess.PIPE) for _ in range(2))
    try:
        with StageCaps([0.5, 0.5], ["b", "b"]) as caps:
            caps.attach([(0, first.pid), (1, second.pid)])
            assert len(_idle_members(controller, second.pid)) == 1
            first.communicate(b"\n", timeout=WAIT_S)  # the stage first added ends
            # the filler polls every FILLER_FOLLOW_S: give it ample time to (wrongly) end
            limit = time.monotonic() + 2.0
            while time.monotonic() < limit and _idle_members(controller, second.pid):
                time.sleep(0.05)
            assert len(_idle_members(controller, second.pid)) == 1, \
                "the board's other stage was left without a filler"
    finally:
        for child in (first, second):
            child.kill()
            child.wait()
