"""Review of issue 11's trials: a trial is for a split left behind, priced from the busy
times it measured when it last ran. A split that never ran is priced from the running split's
fresh measurements (its prediction times the board's measured/predicted ratio): nothing stale
to re-measure, so a link step must not send the stream there on a guess."""

from __future__ import annotations

from hwsched.runtime.controller import (
    DEFAULT_MARGIN,
    AlternativeCost,
    Measured,
    _Controller,
    estimate_throughput_ips,
)
from hwsched.runtime.frames import Report

TICK_S = 0.1
#: Running from the start; light on the wire.
RUNNING = AlternativeCost(0, (3,), (2.0, 2.0), {1: 10_000}, {1: None})
#: Never run: a little more compute per stage and three times the bytes, so a slow link
#: limits it (which arms it) and a fast one does not.
NEVER_RUN = AlternativeCost(1, (6,), (2.1, 2.1), {1: 30_000}, {1: None})
COSTS = (RUNNING, NEVER_RUN)


def _run(levels: list[tuple[float, float]]) -> _Controller:
    """The stream on split 0 (or wherever the controller sends it); each stage reports its
    split's predicted busy time (the truth here), the hop the link's rate of the level."""
    controller, now_s = _Controller(COSTS, 1.0, DEFAULT_MARGIN), 0.0
    controller.started_s = 0.0
    for dwell_s, mbps in levels:
        for _ in range(round(dwell_s / TICK_S)):
            now_s += TICK_S
            alt = controller.state.current
            ms = COSTS[alt].stage_ms
            controller.observe([Report(0, 0, None, ms[0], alt, now_s),
                                Report(1, 1, mbps, ms[1], alt, now_s)], now_s)
    return controller


def test_the_never_run_split_is_never_the_better_one():
    """The oracle, brute force over link rates: with split 0's busy times measured, split 1
    is slower at every rate from 0.1 to 10^5 Mbit/s — no switch to it can pay."""
    measured = Measured({}, {(0, 0): 2.0, (1, 0): 2.0})
    for exponent in range(-10, 51):
        rate = {1: 10 ** (exponent / 10)}
        at = Measured(rate, measured.busy_ms)
        assert (estimate_throughput_ips(RUNNING, at, COSTS)
                > estimate_throughput_ips(NEVER_RUN, at, COSTS)), rate


def test_a_link_step_does_not_send_the_stream_to_a_split_that_never_ran():
    """100 Mbit/s (the never-run split is link-bound there: armed), then 1000 Mbit/s for
    5 s. Failed before: a trial to split 1 after the short hold, and the stream stayed there
    (split 0 beats it by less than the margin), ~5% slower for the rest of the run."""
    controller = _run([(3.0, 100.0), (5.0, 1000.0)])
    assert controller.decisions == []
    assert controller.state.current == 0


#: Best over a 50 Mbit/s link although the link limits it there (2.2 ms on the wire against
#: 2 ms of compute: armed), and at 1000 Mbit/s within the margin of the other split.
LINKED = AlternativeCost(0, (3,), (2.0, 2.0), {1: 13_750}, {1: None})
LOCAL = AlternativeCost(1, (6,), (2.1, 2.1), {1: 10}, {1: None})


def test_a_scripted_switch_disarms_the_trials_as_a_controller_switch_does():
    """The stream runs split 0 at 50 Mbit/s (the link limits it: armed) and at 1000 (still
    split 0: no trial of the current split); then ``--switch-at`` moves it to split 1, which
    the controller does not undo on price (split 0 beats it by less than the margin). No link
    step since the switch, so no trial (failed before: the arming from before the scripted
    switch sent the stream back to split 0 as a 'trial' 0.3 s later)."""
    from hwsched.runtime.frames import Message

    costs = (LINKED, LOCAL)
    controller, now_s = _Controller(costs, 1.0, DEFAULT_MARGIN), 0.0
    controller.started_s = 0.0
    for dwell_s, mbps, scripted in ((3.0, 50.0, None), (3.0, 1000.0, None), (3.0, 1000.0, 1)):
        if scripted is not None:
            controller.take(Message("switch", 0, 0.0, {}, 0, alternative=scripted))
        for _ in range(round(dwell_s / TICK_S)):
            now_s += TICK_S
            alt = controller.state.current
            ms = costs[alt].stage_ms
            controller.observe([Report(0, 0, None, ms[0], alt, now_s),
                                Report(1, 1, mbps, ms[1], alt, now_s)], now_s)
    assert controller.decisions == []
    assert controller.state.current == 1


def _three_splits(ms: tuple[float, float, float], sent: tuple[int, int, int]
                  ) -> tuple[AlternativeCost, ...]:
    return tuple(AlternativeCost(i, (3 * (i + 1),), (ms[i], ms[i]), {1: sent[i]}, {1: None})
                 for i in range(3))


def _stepping(splits, levels, seed) -> _Controller:
    """Each ``(dwell_s, mbps)`` level in turn; the stages report their split's predicted time
    times a drift within ±20%, drawn afresh at every report."""
    import random

    controller, rng, now_s = _Controller(splits, 1.0, DEFAULT_MARGIN), random.Random(seed), 0.0
    for dwell_s, mbps in levels:
        for _ in range(max(1, round(dwell_s / TICK_S))):
            now_s += TICK_S
            alt = controller.state.current
            ms = splits[alt].stage_ms
            controller.observe([Report(0, 0, None, ms[0] * rng.uniform(0.8, 1.2), alt),
                                Report(1, 1, mbps, ms[1] * rng.uniform(0.8, 1.2), alt)], now_s)
    return controller


def test_three_splits_make_at_most_one_trial_per_link_step():
    """Issue 11's 'one trial per link step' with more than two alternatives (the merged
    property tests have two): hypothesis over three splits and a stepping link."""
    import itertools

    from hypothesis import given, settings
    from hypothesis import strategies as st

    @settings(max_examples=150, deadline=None)
    @given(ms=st.tuples(*[st.floats(0.1, 20.0)] * 3),
           sent=st.tuples(*[st.integers(10, 2_000_000)] * 3),
           levels=st.lists(st.tuples(st.floats(0.1, 4.0), st.floats(0.01, 1e5)),
                           min_size=1, max_size=8),
           seed=st.integers(0, 2**32))
    def check(ms, sent, levels, seed):
        controller = _stepping(_three_splits(ms, sent), levels, seed)
        steps = sum(1 for (_, a), (_, b) in itertools.pairwise(levels) if a != b)
        assert sum(1 for d in controller.decisions if d["trial"]) <= steps

    check()


def test_the_three_split_property_sees_trials():
    """Not vacuous: a fade and a recovery over three splits make one trial (of the widest,
    the fastest by its stale price of the two the fade left behind)."""
    controller = _stepping(_three_splits((4.0, 4.1, 4.2), (1_000_000, 300_000, 1000)),
                           [(3.0, 40_000.0), (3.0, 100.0), (3.0, 40_000.0)], 1)
    assert [(d["to"], d["trial"]) for d in controller.decisions] == [(2, False), (0, True)]
