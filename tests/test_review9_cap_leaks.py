"""Steady caps leave nothing behind when the process that made them is SIGKILLed: its filler
ends (it watches its parent), and the next cap made beside it removes the orphaned cgroup."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from test_cpucap import controller_or_skip

from hwsched.runtime.cpucap import GROUP_PREFIX, CpuCap

#: Makes a steady cap over a sleeping stage, prints the stage, the filler and the cgroup,
#: then waits to be killed.
MAKER = r"""
import subprocess, sys
from hwsched.runtime.cpucap import CpuCap
stage = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
cap = CpuCap(0.5, "leak-test").__enter__()
cap.add(stage.pid)
print(stage.pid, cap.filler_pid, cap.path, flush=True)
sys.stdin.readline()
"""
WAIT_S = 60.0


def _gone(pid: int) -> bool:
    """Whether ``pid`` has ended (a zombie has ended too)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state == "Z"


def _wait_until(condition, what: str) -> None:
    limit = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < limit, what
        time.sleep(0.05)


def test_a_sigkilled_cap_maker_leaves_no_filler_and_no_cgroup():
    controller_or_skip()
    maker = subprocess.Popen([sys.executable, "-c", MAKER], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    stage = None
    try:
        stage_pid, filler_pid, path = maker.stdout.readline().split()
        stage, filler, path = int(stage_pid), int(filler_pid), Path(path)
        assert path.is_dir() and path.name.startswith(GROUP_PREFIX)
        maker.send_signal(signal.SIGKILL)
        maker.wait(timeout=WAIT_S)
        _wait_until(lambda: _gone(filler), "the filler outlived the process that started it")
        with CpuCap(0.5, "sweeper"):
            assert not path.exists(), "the orphaned cgroup was left behind"
        assert not _gone(stage)  # the orphaned stage itself is not ours to end
    finally:
        maker.kill()
        maker.wait()
        if stage is not None:
            os.kill(stage, signal.SIGKILL)
