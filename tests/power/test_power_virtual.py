from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from waiting import GENEROUS_TIMEOUT_S, wait_until

from hwsched.errors import PowerError
from hwsched.power.energy import energy_report, read_events
from hwsched.power.logfile import read_log
from hwsched.power.meters import make_parser
from hwsched.power.record import Recorder
from hwsched.power.virtual import (
    CpuPowerModel,
    VirtualMeter,
    ina219_line,
    machine_cpu_s,
    process_cpu_s,
)

WORKLOAD = Path(__file__).with_name("workload.py")


def test_ina219_line_parses_back():
    reading = make_parser("ina219").parse(ina219_line(1234, 2500.0))
    assert reading.meter_t_s == 1.234
    assert reading.power_mw == 2500.0
    assert reading.voltage_v * reading.current_ma == pytest.approx(2500.0)


def test_cpu_time_of_a_burning_process_grows_and_vanishes_with_it():
    child = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        first = process_cpu_s(child.pid)
        assert first is not None
        wait_until(lambda: (process_cpu_s(child.pid) or 0.0) - first > 0.05,
                   what="the burning child to use 0.05 CPU-seconds")
    finally:
        child.kill()
        child.wait()
    assert process_cpu_s(child.pid) is None
    assert machine_cpu_s() > 0


def test_power_model_follows_utilization():
    clock = iter([0.0, 1.0]).__next__
    idle = CpuPowerModel([os.getpid()], idle_mw=1000, active_mw=1000, clock=clock)
    assert idle.power_mw() == 1000.0
    with pytest.raises(PowerError, match="need 0 <= idle_mw <= active_mw"):
        CpuPowerModel(idle_mw=3000, active_mw=2000)


def test_virtual_meter_streams_at_its_rate_with_banner_and_header(tmp_path):
    rate_hz = 200
    with VirtualMeter(power=lambda: 1234.5, rate_hz=rate_hz) as meter:
        assert meter.port.startswith("/dev/pts/")
        with Recorder(meter.port, "ina219", tmp_path / "v.csv") as recorder:
            wait_until(lambda: recorder.count("samples") > 60, what="61 samples")
    log = read_log(tmp_path / "v.csv")
    assert recorder.summary.samples > 60 and recorder.summary.sample_rate_hz > 0
    assert set(log.power_mw.tolist()) == {1234.5}
    # never faster than its rate, on its own clock: a late tick is skipped, never caught up
    # in a burst, so sample i comes at least (i - 2) periods after sample 0 (ms stamps: -1 ms).
    # How much slower it runs depends on the machine's load, so no lower bound is asserted.
    meter_s = np.asarray(log.meter_t_s, dtype=np.float64)
    steps = np.arange(len(meter_s))
    assert np.all(np.diff(meter_s) >= 0)
    assert np.all(meter_s - meter_s[0] >= (steps - 2) / rate_hz - 1e-3 - 1e-9)
    with pytest.raises(PowerError, match="rate_hz must be in"):
        VirtualMeter(rate_hz=0)


def test_end_to_end_virtual_meter_with_a_cpu_burning_workload(tmp_path):
    """A real process burns 120 ms of CPU per frame; the virtual meter follows it on a pty, the
    recorder logs it, and the energy stage finds about (active − idle)·0.12 s per inference,
    however long the bursts took on a loaded machine."""
    events_path = tmp_path / "events.jsonl"
    # 3 s idle first, followed from its start (the workload's ".ready" file): more idle samples
    # than all the gaps between bursts hold, so the median idle estimate stays clean even when
    # a loaded machine smears each burst into its gap
    command = [sys.executable, str(WORKLOAD), str(events_path), "8", "0.12", "0.15", "3.0"]
    workload = subprocess.Popen(command)
    ready = Path(f"{events_path}.ready")
    wait_until(lambda: ready.exists() or workload.poll() is not None, what="the workload to start")
    idle_mw, active_mw = 2000.0, 3500.0
    with (
        VirtualMeter([workload.pid], rate_hz=200, idle_mw=idle_mw, active_mw=active_mw) as meter,
        Recorder(meter.port, "ina219", tmp_path / "e2e.csv"),
    ):
        assert workload.wait(timeout=GENEROUS_TIMEOUT_S) == 0
    log, inferences = read_log(tmp_path / "e2e.csv"), read_events(events_path)
    estimated = energy_report(log, inferences)
    assert estimated.idle_power_mw == pytest.approx(idle_mw, abs=100)
    # Dynamic energy against the true idle power: an idle estimate off by tens of mW (samples
    # near a burst carry some of it) times a burst stretched by a loaded machine would swamp it.
    report = energy_report(log, inferences, idle_power_mw=idle_mw)
    events = [json.loads(line) for line in events_path.read_text().splitlines()]
    ideal_dynamic_mj = (active_mw - idle_mw) * statistics.median(e["cpu_s"] for e in events)
    busy_s = [e["end_s"] - e["start_s"] for e in events]
    assert report.inferences == 8
    # the meter's 20 ms averaging window moves some energy past each burst's end
    assert 0.5 * ideal_dynamic_mj < report.dynamic_energy_per_inference_mj < 1.2 * ideal_dynamic_mj
    # the rest is idle power over the burst, however long the burst took
    idle_part_mj = report.energy_per_inference_mj - report.dynamic_energy_per_inference_mj
    slack_mj = 0.5 * ideal_dynamic_mj
    assert (report.idle_power_mw * min(busy_s) - slack_mj < idle_part_mj
            < report.idle_power_mw * max(busy_s) + slack_mj)
    cap_mw = idle_mw + (active_mw - idle_mw) * (os.cpu_count() or 1)
    assert idle_mw < report.average_power_mw <= report.peak_power_mw <= cap_mw


def test_following_a_missing_process_is_an_error():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    with pytest.raises(PowerError, match=f"no process with PID {child.pid} to follow"):
        CpuPowerModel([child.pid], idle_mw=1, active_mw=2)
