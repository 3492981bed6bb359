from __future__ import annotations

import numpy as np
import pytest

from hwsched.power.timebase import align, clock_segments, fit_segment, meter_clock_usable


def _arrivals(meter_t_s, offset_s, drift_ppm, seed=0):
    """Host arrival times: true instants plus a non-negative, bursty transport delay."""
    rng = np.random.default_rng(seed)
    delay_s = rng.exponential(0.002, meter_t_s.size)
    batched = rng.random(meter_t_s.size) < 0.2
    delay_s[batched] += 0.015  # lines that waited for a later USB frame
    return offset_s + meter_t_s * (1 + drift_ppm * 1e-6) + delay_s


def test_fit_recovers_offset_and_drift_under_delay_jitter():
    meter_t_s = np.arange(0.0, 60.0, 0.01)
    fit = fit_segment(meter_t_s, _arrivals(meter_t_s, 1.7e9, -80.0))
    assert fit.offset_s == pytest.approx(1.7e9, abs=0.0005)
    assert fit.drift_ppm == pytest.approx(-80.0, abs=10)
    assert 0 <= fit.delay_p50_ms < fit.delay_p95_ms < 25


def test_segments_split_at_restarts_jumps_and_recorder_segments():
    meter = np.array([0.0, 0.1, 0.2, 0.0, 0.1, 5.0, 5.1, 5.2])
    host = np.arange(8) * 0.1
    assert clock_segments(meter, host) == [slice(0, 3), slice(3, 5), slice(5, 8)]
    segment = np.array([0, 0, 0, 1, 1, 1, 2, 2])
    assert clock_segments(meter, host, segment)[-2:] == [slice(5, 6), slice(6, 8)]


def test_align_maps_each_segment_with_its_own_offset():
    meter = np.concatenate([np.arange(0, 5, 0.01), np.arange(0, 5, 0.01)])
    host = np.concatenate([100 + meter[:500], 110 + meter[500:]])
    timebase = align(meter, host)
    assert timebase.source == "meter clock" and len(timebase.fits) == 2
    assert np.max(np.abs(timebase.t_s - host)) < 1e-6


def test_coarse_or_missing_meter_clock_falls_back_to_host_time():
    host = np.arange(0, 3, 0.1)
    coarse = np.floor(host)  # tegrastats' 1 s stamps at a 100 ms interval
    assert not meter_clock_usable(coarse)
    assert align(coarse, host).source == "host arrival time"
    assert align(np.full(host.size, np.nan), host).t_s is not None
