"""A split left behind is priced by what it did while it ran, not by its last reports.

Seen in ``bench/bench_adapt.py`` (EfficientNet-B0, 1000 → 20 → 1000 Mbit/s): when the link
faded, the wide split's first stage was starved and computed each frame after an idle gap on
cold caches, 11 ms instead of 7.5; its last busy report before the switch was that 11 ms, and
after the recovery the controller priced the wide split from it, found it no better than the
narrow one and never switched back (throughput 0.76 of a fresh run of the wide split). The
oracle is the truth the reports were made from: the wide split runs 7.5 ms a frame when fed.
"""

from __future__ import annotations

from hwsched.runtime.controller import (
    AlternativeCost,
    Measured,
    estimate_throughput_ips,
    qualifies,
)
from hwsched.runtime.frames import Report

WIDE = AlternativeCost(0, (104,), (7.5, 8.0), {1: 87_000}, {1: 0.7})
NARROW = AlternativeCost(1, (175,), (10.5, 5.0), {1: 62_000}, {1: 0.5})
COSTS = (WIDE, NARROW)
TICK_S = 0.1  # a stage reports every 0.1 s


def _run(measured: Measured, seconds: float, alternative: int, busy_ms: tuple[float, float],
         hop_mbps: float, start_s: float) -> tuple[Measured, float]:
    """``seconds`` of reports from both stages running ``alternative``."""
    t = start_s
    for _ in range(round(seconds / TICK_S)):
        t += TICK_S
        measured = measured.with_report(Report(0, 0, None, busy_ms[0], alternative, t))
        measured = measured.with_report(Report(1, 1, hop_mbps, busy_ms[1], alternative, t))
    return measured, t


def _fade_and_recover() -> Measured:
    m, t = _run(Measured(), 10.0, 0, (7.5, 8.0), 1000.0, 0.0)   # wide split, fast link
    m, t = _run(m, 1.2, 0, (11.0, 8.0), 19.0, t)                # faded: starved first stage
    m, t = _run(m, 14.0, 1, (10.8, 4.8), 19.0, t)               # switched to the narrow one
    m, _ = _run(m, 1.0, 1, (10.8, 4.8), 2000.0, t)              # the link recovered
    return m


def test_after_the_recovery_the_wide_split_qualifies_again():
    measured = _fade_and_recover()
    wide = estimate_throughput_ips(WIDE, measured, COSTS)
    narrow = estimate_throughput_ips(NARROW, measured, COSTS)
    assert wide > 1000.0 / 8.0 * 0.99  # its stages as they ran fed: 7.5 and 8.0 ms
    assert narrow < 1000.0 / 10.8 * 1.01
    assert qualifies(COSTS, measured, current=1, candidate=0)


def test_the_running_split_is_priced_by_its_latest_report():
    measured = _fade_and_recover()
    slower, _ = _run(measured, 0.1, 1, (14.0, 4.8), 2000.0, 100.0)  # the board throttles
    assert estimate_throughput_ips(NARROW, slower, COSTS) == 1000.0 / 14.0


def test_the_history_is_bounded():
    measured, _ = _run(Measured(), 60.0, 0, (7.5, 8.0), 1000.0, 0.0)
    assert all(len(h) <= 50 for h in measured.busy_history_ms.values())
