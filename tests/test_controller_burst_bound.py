"""A lower bound inflated by a token bucket's burst must not make a trial or a short hold.

Seen in `bench/bench_adapt.py` (EfficientNet-B0, link faded to 20 Mbit/s, the narrow split
running): two slow saturated samples stepped the hop's estimate down to 9.9 Mbit/s, and an
isolated message that crossed in the bucket's burst gave a lower bound of 31 Mbit/s. A bound
2x above the estimate overrules it, and the hop is then priced at the plan's prediction (the
link "is not what limits now"), so the wide split looked free of the link at every scale of
the strong-evidence box: the controller switched to it for a trial 7 s into the fade, and
back 1.8 s later. The box is a question about rates, so it prices each hop at what is known
of its rate; the estimate outside the box keeps its optimism.
"""

from hwsched.runtime.controller import (
    AlternativeCost,
    Measured,
    link_free,
    strong_evidence,
    trial_candidate,
)
from hwsched.runtime.frames import Report

# the bench's adaptive plan: cut 104 (wide) and cut 175 (narrow), two stages, hop 1 between
WIDE = AlternativeCost(0, (104,), (47.3, 48.4), {1: 62_720}, {1: 0.63})
NARROW = AlternativeCost(1, (175,), (73.3, 22.4), {1: 37_632}, {1: 0.42})
COSTS = (WIDE, NARROW)


def _run(exact_mbps: float, bound_mbps: float | None) -> Measured:
    """The wide split ran (13.5 ms a frame on each stage), then the narrow one (20 ms, 7 ms:
    74 and 50 inf/s, the controller's figures in that run);
    the hop's estimate and bound as the stage last reported them."""
    measured = Measured()
    for _ in range(60):
        for stage in (0, 1):
            measured = measured.with_report(Report(stage, stage, 1000.0, 13.5, 0))
    for _ in range(60):
        measured = measured.with_report(Report(0, 0, None, 20.0, 1))
        measured = measured.with_report(Report(1, 1, exact_mbps, 7.0, 1,
                                               bandwidth_at_least_mbps=bound_mbps))
    return measured


def test_a_burst_bound_on_a_faded_link_is_no_reason_for_a_trial():
    faded = _run(9.87, 31.07)
    assert not link_free(WIDE, faded, COSTS)
    assert trial_candidate(COSTS, faded, current=1, armed=frozenset({0})) is None
    assert not strong_evidence(COSTS, faded, current=1, candidate=0)


def test_a_recovered_link_still_earns_the_trial():
    # the oracle: the bench's recoveries, probed at 797-1992 Mbit/s — as a bound over a
    # stale faded estimate, and as an exact train
    for measured in (_run(19.0, 800.0), _run(800.0, None)):
        assert link_free(WIDE, measured, COSTS)
        assert trial_candidate(COSTS, measured, current=1, armed=frozenset({0})) == 0


def test_a_bound_that_does_not_overrule_the_estimate_leaves_the_box_as_it_was():
    # a bound below twice the estimate is priced at the estimate by the plain estimate, so
    # the box must price it there too (reviewer's case: 80 Mbit/s measured, 120 bound)
    wide = AlternativeCost(0, (3,), (0.5, 0.5), {1: 100_000}, {1: None})
    narrow = AlternativeCost(1, (6,), (2.0, 0.5), {1: 1_000}, {1: None})
    plain, bounded = Measured({1: 80.0}), Measured({1: 80.0}, {}, {1: 120.0})
    assert strong_evidence((wide, narrow), bounded, 0, 1) == strong_evidence(
        (wide, narrow), plain, 0, 1)
    a = AlternativeCost(0, (5,), (2.0, 2.0), {1: 125_000}, {1: None})
    assert link_free(a, Measured({1: 1100.0}, {}, {1: 2100.0})) == link_free(
        a, Measured({1: 1100.0}))
