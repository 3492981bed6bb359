"""``--max-runtime`` is one limit for a runner's loop and its watchdog: both count from the
runner's start. The loop used to count from when the role finished loading (model, dataset),
so a load longer than the watchdog's grace turned every clean stop (stats written, exit 0) into
a watchdog kill (exit 2, no stats)."""

from __future__ import annotations

import time

import numpy as np
from memchannel import MemoryChannel
from test_runtime_stage import SPECS, _Identity

from hwsched.runtime import process
from hwsched.runtime.frames import encode_data
from hwsched.runtime.process import RunOptions, StopFlag
from hwsched.runtime.stage import _StageLoop


def test_the_deadline_counts_from_the_start_whenever_a_role_asks(monkeypatch):
    options = RunOptions(max_runtime_s=10.0, started_s=100.0)
    monkeypatch.setattr(process.time, "monotonic", lambda: 500.0)  # a long load later
    assert options.deadline_s() == 110.0


def test_a_stage_whose_time_ran_out_while_loading_stops_without_serving():
    """Started 10 s ago with --max-runtime 5 (the model took 10 s to load): the loop must not
    begin serving, whatever arrives."""
    up, down = MemoryChannel(), MemoryChannel()
    options = RunOptions(max_runtime_s=5.0, started_s=time.monotonic() - 10.0)
    loop = _StageLoop(_Identity(), up, down, options, 0)
    up.inbox.append(encode_data(0, 0.0, {"x": np.zeros((1, 2), np.float32)}, SPECS))
    loop.serve(StopFlag())
    assert loop.busy_s == [] and down.sent == []
    assert loop.stats()["frames"] == 0
