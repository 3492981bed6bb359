"""``--refine`` under ``--assign auto``: two candidates with the same cuts on boards in another
order are two splits, each measured and re-ranked on its own times.

Failed before the fix: measurements were keyed by cut positions only, so the second order was
never measured (the first K distinct splits skipped it) and, once one order was measured, both
were re-ranked on that order's times."""

from __future__ import annotations

import itertools

import pytest

from hwsched.schedule import rank_splits
from hwsched.schedule.refine import refine, refine_iteratively, split_key
from hwsched.schedule.synthetic import synthetic_graph

#: The hidden truth a measurement reads: a stage's ms per layer, by platform (the Jetson here
#: is measured four times faster than an rpi4, whatever the roofline says).
MS_PER_LAYER = {"rpi4": 1.0, "jetson_nano": 0.25}


@pytest.fixture(scope="module")
def both_orders():
    ranking = rank_splits(synthetic_graph(10, seed=3), ["rpi4", "jetson_nano"], "gige",
                          assign="auto", stages=2)
    return [c for c in ranking.candidates if len(c.stages) == 2]


def _truth(candidate) -> list[float]:
    """Each stage's measured ms from its own platform and layer count (not from the cuts)."""
    bounds = [0, *candidate.cut_positions, 10]  # synthetic_graph(10): 10 layers
    layers = [stop - start for start, stop in itertools.pairwise(bounds)]
    return [MS_PER_LAYER[s.cost.platform] * n for s, n in zip(candidate.stages, layers,
                                                             strict=True)]


def test_every_split_is_measured_and_ranked_on_its_own_times(both_orders):
    cuts = both_orders[0].cut_positions
    pair = [c for c in both_orders if c.cut_positions == cuts]
    assert len(pair) == 2 and pair[0].assignment == pair[1].assignment[::-1]
    seen = []

    def measure(candidate):
        seen.append(split_key(candidate))
        return _truth(candidate), ({}, {})

    refined = refine_iteratively(both_orders, len(both_orders), measure, "throughput",
                                 max_rounds=0)
    assert len(seen) == len(set(seen)) == len({split_key(c) for c in both_orders})
    for candidate in refined.candidates:  # oracle: the truth of its own boards' order
        assert [s.cost.latency_ms for s in candidate.stages] == pytest.approx(
            _truth(candidate))
    same_cuts = [c for c in refined.candidates if c.cut_positions == cuts]
    assert len(same_cuts) == 2
    assert same_cuts[0].period_ms <= same_cuts[1].period_ms  # ranked apart, by their own times


def test_refine_keeps_both_orders_apart(both_orders):
    cuts = both_orders[0].cut_positions
    pair = [c for c in both_orders if c.cut_positions == cuts]
    times = {split_key(c): _truth(c) for c in pair}
    rows = refine(pair, times, "throughput").to_dict()["candidates"]
    by_order = {tuple(s["platform"] for s in row["stages"]): [s["latency_ms"] for s in
                                                            row["stages"]] for row in rows}
    assert by_order == {c.assignment: pytest.approx(_truth(c)) for c in pair}
