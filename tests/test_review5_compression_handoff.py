"""Link compression with the runner's hand-off charged: a link's level also sets the bytes
both its cores hand off, so the level the link alone finds cheapest (fp32 on a fast link,
where int8's conversion costs more than the wire saves) is not the cheapest hop. Oracle:
brute force over every split and level, each charged by ``evaluate`` at that one level."""

from __future__ import annotations

import pytest

from hwsched.costs.runtime import RuntimeCost
from hwsched.hardware import load_link
from hwsched.schedule import evaluate, rank_splits
from hwsched.schedule.sweep import with_bandwidth
from hwsched.schedule.synthetic import synthetic_graph

COST = RuntimeCost.asymmetric(sender=(0.4, 2e-5), receiver=(0.3, 3e-5))
LEVELS = ("fp32", "int8")


@pytest.mark.parametrize("bandwidth_mbps", [1e7, 1e3])
@pytest.mark.parametrize("seed", [3, 5])
def test_the_latency_optimum_with_compression_and_handoff_is_brute_force(bandwidth_mbps, seed):
    link = with_bandwidth(load_link("gige"), bandwidth_mbps)
    graph, boards = synthetic_graph(12, seed=seed), ["rpi4", "rpi5"]
    ranking = rank_splits(graph, boards, link, objective="latency", compression=LEVELS,
                          runtime=COST)
    best = min(evaluate(graph, boards, link, (cut,), compression=(level,),
                        runtime=COST).latency_ms
               for cut in range(1, len(graph)) for level in LEVELS)
    assert ranking.best.latency_ms == pytest.approx(best, rel=1e-9)
