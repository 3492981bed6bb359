"""Noisy probe trains on a steady faded link do not ratchet the hop meter into a false step.

Seen in ``bench/bench_adapt.py`` (20 Mbit/s token-bucket link, saturated estimate ~19.3):
one train read 14.6 Mbit/s and replaced the estimate, the next read 31.4 — a burst, but 2x
the new estimate, so it replaced it too, and the controller switched back to the wide split
mid-fade. The oracle is the link's rate: 20 Mbit/s all along.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from hwsched.runtime.reliable import STEP_FACTOR, HopMeter

LINK_MBPS = 20.0
BYTES_PER_MBIT = 125_000


def _saturated_meter() -> HopMeter:
    """A meter that measured the link saturated: messages queued back to back at 20 Mbit/s."""
    meter, t = HopMeter(), 0.0
    size = 50_000
    for _ in range(40):
        sent = t
        t += size / (LINK_MBPS * BYTES_PER_MBIT)
        meter.observe(size, sent_s=sent - 0.001, read_s=t, busy_s=0.0)
    assert abs(meter.exact_mbps - LINK_MBPS) < 1.0
    return meter


def _probe(meter: HopMeter, mbps: float, at_s: float) -> None:
    size = 64 * 1024
    meter.observe_probe(size, sent_s=at_s, read_s=at_s + size / (mbps * BYTES_PER_MBIT),
                        exact=True)


def test_a_slow_train_then_a_burst_is_not_a_step():
    meter = _saturated_meter()
    _probe(meter, 14.6, 100.0)
    _probe(meter, 31.4, 101.0)
    assert meter.exact_mbps < LINK_MBPS * 1.1
    assert meter.at_least_mbps == 31.4 or abs(meter.at_least_mbps - 31.4) < 0.01


@given(st.lists(st.floats(LINK_MBPS / 1.25, LINK_MBPS * 1.55), min_size=1, max_size=20))
def test_trains_within_the_step_factor_keep_the_estimate_near_the_link(readings):
    """Trains 1.25x below to 1.55x above the link: the slow ones smooth the estimate down to
    at most 1.25x below, so a fast one is never 2x (a step) above it."""
    meter = _saturated_meter()
    for k, mbps in enumerate(readings):
        _probe(meter, mbps, 100.0 + k)
    assert LINK_MBPS / 1.25 * 0.99 <= meter.exact_mbps <= LINK_MBPS * 1.05
    assert STEP_FACTOR > 1.25 * 1.55


def test_a_real_recovery_is_still_a_step():
    meter = _saturated_meter()
    _probe(meter, 900.0, 100.0)
    assert meter.exact_mbps == 900.0 or abs(meter.exact_mbps - 900.0) < 1e-6
