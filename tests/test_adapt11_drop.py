"""The drop's switch when the better split never ran (issue 11: one drop switch took 3.84 s).

Seen in ``bench/bench_adapt.py`` (EfficientNet-B0, 1000 → 20 Mbit/s): the narrow split had not
run, so the controller priced its stages from the wide split's by the predictions' ratio — and
the wide split's first stage, starved by the faded link, computed each frame after an idle
gap on cold caches, half as slow again as when fed. Priced from that, the narrow split's lead
hovered around the 10% margin and the switch waited for it.

Oracle: a fake clock replays reports made from a *truth* of its own — each split's busy time
per stage when fed, its first stage half as slow again while a link limits the split (the
link's rate, not the controller, decides that) — and the source follows the controller's
switches after a few ticks of draining. The bounds come from the controller's parameters.
"""

from __future__ import annotations

import itertools

from hwsched.runtime.controller import (
    DEFAULT_MARGIN,
    AlternativeCost,
    Measured,
    _Controller,
    estimate_throughput_ips,
    qualifies,
    short_hold_s,
)
from hwsched.runtime.frames import Report
from hwsched.runtime.stage import REPORT_INTERVAL_S

HOLD_S = 1.0
TICK_S = REPORT_INTERVAL_S
DRAIN_TICKS = 2
#: The bench's plan: the cost model's predictions for two Raspberry Pi 4 (ms), the bytes each
#: split sends across its one hop.
WIDE = AlternativeCost(0, (104,), (47.3, 48.4), {1: 62_720}, {1: 0.63})
NARROW = AlternativeCost(1, (175,), (73.3, 22.4), {1: 37_632}, {1: 0.42})
COSTS = (WIDE, NARROW)
#: The truth: busy ms per frame when fed (the host runs 4.7x faster than the prediction).
FED_MS = {0: (10.0, 10.2), 1: (15.5, 4.7)}
STARVED = 1.5  # a starved first stage: idle gaps, cold caches
HIGH_MBPS, LOW_MBPS = 1000.0, 20.0
FADE_S, RECOVER_S, END_S = 10.0, 20.0, 25.0


def _link(t: float) -> float:
    return LOW_MBPS if FADE_S <= t < RECOVER_S else HIGH_MBPS


def _busy_ms(alt: int, mbps: float) -> tuple[float, float]:
    """The truth: a split whose hop is slower than its slowest fed stage starves its stages."""
    cost = (WIDE, NARROW)[alt]
    hop_ms = cost.hop_bytes[1] * 8 / (mbps * 1e3)
    first, second = FED_MS[alt]
    return (first * STARVED, second) if hop_ms > max(first, second) else (first, second)


def _replay() -> _Controller:
    controller = _Controller(COSTS, HOLD_S, DEFAULT_MARGIN)
    controller.started_s = 0.0
    running, pending, since = 0, 0, 0
    for i in itertools.count(1):
        t = i * TICK_S
        if t > END_S + 1e-9:
            return controller
        if pending != controller.state.current:
            pending, since = controller.state.current, 0
        since += 1
        running = pending if since > DRAIN_TICKS else running
        busy = _busy_ms(running, _link(t))
        controller.observe([Report(0, 0, None, busy[0], running, t),
                            Report(1, 1, _link(t), busy[1], running, t)], t)


def test_the_premise_priced_from_starved_busy_times_the_narrow_split_is_within_the_margin():
    """What the controller saw before the fix: on the wide split's starved busy times the
    never-run narrow split does not qualify; on its fed ones it does, by far."""
    starved = Measured({1: LOW_MBPS}, {(0, 0): FED_MS[0][0] * STARVED, (1, 0): FED_MS[0][1]})
    assert not qualifies(COSTS, starved, current=0, candidate=1)
    fed = Measured({1: LOW_MBPS}, {(0, 0): FED_MS[0][0], (1, 0): FED_MS[0][1]})
    assert qualifies(COSTS, fed, current=0, candidate=1)
    truth = 1000 / max(*FED_MS[1], 37_632 * 8 / (LOW_MBPS * 1e3))
    assert estimate_throughput_ips(NARROW, fed, COSTS) > truth * 0.95


def test_a_never_run_split_is_priced_from_busy_times_before_the_link_limited():
    """The drop's switch comes within the full hold (busy times decide) and two ticks of the
    first faded report (failed before: never), and the switch back after the recovery
    within the short hold and two ticks; nothing else."""
    controller = _replay()
    decided = [(d["at_s"], d["to"]) for d in controller.decisions]
    assert [to for _, to in decided] == [1, 0]
    (drop_s, _), (back_s, _) = decided
    assert FADE_S < drop_s <= FADE_S + HOLD_S + 2 * TICK_S + 1e-9
    assert RECOVER_S < back_s <= RECOVER_S + short_hold_s(HOLD_S) + 2 * TICK_S + 1e-9


def test_fed_busy_times_are_kept_apart_from_starved_ones():
    """A report taken while a link limited its split joins the history but not the fed one;
    once the split runs fed again its latest report stands for it."""
    m = Measured()
    for ms in (10.0, 10.4, 9.8):
        m = m.with_report(Report(0, 0, None, ms, 0))
    for ms in (15.0, 16.0):
        m = m.with_report(Report(0, 0, None, ms, 0), starved=True)
    assert (m.stage_busy_ms(0, 0), m.reference_busy_ms(0, 0)) == (16.0, 10.0)
    m = m.with_report(Report(0, 0, None, 11.0, 0))
    assert m.reference_busy_ms(0, 0) == 11.0
