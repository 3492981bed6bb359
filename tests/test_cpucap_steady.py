"""Steady CPU caps: a capped stage that wakes after idling runs at its board's speed, not at
full speed for the period's unspent quota; a board's stages share one cap; fillers never
outlive their cap or their stage."""

from __future__ import annotations

import os
import subprocess
import sys

from test_cpucap import controller_or_skip

from hwsched.runtime.cpucap import CpuCap, StageCaps

#: A child that pins itself after it is capped (as a stage does), then, on "go", runs bursts
#: of exactly BURST_MS of its own CPU time after idle gaps and prints its CPU time per wall
#: time over the bursts.
BURSTS = r"""
import os, sys, time
os.sched_setaffinity(0, {max(os.sched_getaffinity(0))})
sys.stdin.readline()
burst_s, gap_s, cpu, wall = float(sys.argv[1]) / 1000, float(sys.argv[2]) / 1000, 0.0, 0.0
for _ in range(int(sys.argv[3])):
    time.sleep(gap_s)
    w0, c0 = time.perf_counter(), time.thread_time()
    while time.thread_time() - c0 < burst_s:
        pass
    cpu += time.thread_time() - c0
    wall += time.perf_counter() - w0
print(cpu / wall)
"""
BURST_MS, GAP_MS, COUNT = 3.0, 25.0, 40


def _bursts_speed(steady: bool) -> float:
    child = subprocess.Popen([sys.executable, "-c", BURSTS, str(BURST_MS), str(GAP_MS),
                              str(COUNT)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             text=True)
    try:
        with CpuCap(0.5, "steady-test", steady=steady) as cap:
            cap.add(child.pid)
            out, _ = child.communicate("go\n", timeout=120)
        return float(out)
    finally:
        child.kill()
        child.wait()


def test_short_bursts_after_idle_run_at_the_cap():
    """3 ms bursts after 25 ms idle under a 0.5 cap of a 10 ms period: without the filler each
    burst fits the unspent quota and runs at a whole core (0.75-1.0 measured); steady, at about
    half. Contention can only lower a share, so the bound cannot be met by a loaded host."""
    controller_or_skip()
    assert _bursts_speed(steady=True) < 0.7


def test_the_filler_follows_the_stage_and_ends_with_the_cap():
    controller = controller_or_skip()
    stage = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.readline()"],
                             stdin=subprocess.PIPE)
    try:
        with CpuCap(0.5, "filler-test") as cap:
            cap.add(stage.pid)
            filler = cap.filler_pid
            assert filler is not None and filler in cap.pids()
            assert controller.own_cgroup(filler) == cap.path
            assert os.sched_getscheduler(filler) == os.SCHED_IDLE
        assert not os.path.exists(f"/proc/{filler}")
    finally:
        stage.kill()
        stage.wait()


def test_the_filler_ends_when_its_stage_ends():
    controller_or_skip()
    stage = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.readline()"],
                             stdin=subprocess.PIPE)
    with CpuCap(0.5, "filler-end") as cap:
        cap.add(stage.pid)
        filler = cap._filler
        stage.communicate(b"\n", timeout=60)
        assert filler.wait(timeout=60) == 0  # it noticed, within FILLER_FOLLOW_S of polling


def test_a_restarted_stage_gets_a_filler_of_its_own():
    """A stage killed and restarted at once (as ``emulate`` restarts one) is added while the
    old stage's filler may not have noticed its end yet: the new stage still gets a filler."""
    controller_or_skip()
    argv = [sys.executable, "-c", "import sys; sys.stdin.readline()"]
    first = subprocess.Popen(argv, stdin=subprocess.PIPE)
    second = None
    with CpuCap(0.5, "filler-restart") as cap:
        cap.add(first.pid)
        old = cap._filler
        first.kill()
        first.wait()
        second = subprocess.Popen(argv, stdin=subprocess.PIPE)
        cap.add(second.pid)
        assert cap._filler is not old and cap.filler_pid is not None
        assert old.poll() is not None  # the old filler was ended, not leaked
    second.kill()
    second.wait()


def test_a_whole_core_cap_has_no_filler():
    controller_or_skip()
    stage = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.readline()"],
                             stdin=subprocess.PIPE)
    try:
        with CpuCap(1.0, "no-filler") as cap:
            cap.add(stage.pid)
            assert cap.filler_pid is None and cap.pids() == [stage.pid]
    finally:
        stage.kill()
        stage.wait()


def test_stages_of_one_board_share_one_cap():
    """Stages on board b at one speed share a cgroup; board c, and b's stage given another
    speed (``--board-speed`` is per stage), keep their own."""
    controller = controller_or_skip()
    children = [subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.readline()"],
                                 stdin=subprocess.PIPE) for _ in range(4)]
    try:
        with StageCaps([0.5, 0.5, 0.5, 0.25], ["b", "b", "c", "b"]) as caps:
            caps.attach([(k, child.pid) for k, child in enumerate(children)])
            groups = [controller.own_cgroup(child.pid) for child in children]
            assert groups[0] == groups[1]
            assert len({groups[0], groups[2], groups[3]}) == 3
    finally:
        for child in children:
            child.kill()
            child.wait()
