"""The hand-off charged inside the search must not cost a stage matrix per board: boards of one
kind share one matrix without it, and the charge depends on a neighbour only through its
precision. 48 identical boards over 400 layers (1.3 MB a matrix) stay within a few matrices of
the search without the charge."""

from __future__ import annotations

import tracemalloc

from hwsched.costs.runtime import RuntimeCost
from hwsched.schedule import rank_splits
from hwsched.schedule.synthetic import synthetic_graph

COST = RuntimeCost.asymmetric(sender=(0.4, 2e-6), receiver=(0.3, 3e-6))


def _peak_mb(runtime) -> float:
    graph = synthetic_graph(400, seed=1)
    tracemalloc.start()
    try:
        rank_splits(graph, ["rpi4"] * 48, "gige", runtime=runtime, stages=48, top=2)
        return tracemalloc.get_traced_memory()[1] / 1e6
    finally:
        tracemalloc.stop()


def test_charging_the_handoff_does_not_multiply_the_search_memory_by_the_boards():
    without, charged = _peak_mb(None), _peak_mb(COST)
    assert charged < without + 20, (without, charged)
