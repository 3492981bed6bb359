"""A hop between two stages on one core set is priced with its own wire part when the
planner has one (``same_core_runtime``): on one core the two ends take turns, so it costs more
than across cores (bench_placement measures both). Oracle: hand-computed latencies on a
diamond whose branches sit on one board's two core sets."""

from __future__ import annotations

import math

from hwsched.costs.placement import PlacementCoster
from hwsched.costs.runtime import RuntimeCost
from hwsched.placement import Board, Stage, placement_from_stages
from tests.test_placement_costs import _diamond_parts

CROSS = RuntimeCost.asymmetric(sender=(0.1, 0.0), receiver=(0.2, 0.0), wire=(0.3, 1e-6))
SAME = RuntimeCost.asymmetric(sender=(0.1, 0.0), receiver=(0.2, 0.0), wire=(0.7, 2e-6))
EDGE_BYTES = 256 * 4


def _placement():
    g, _, _ = _diamond_parts()
    board = (Board("p", "rpi4", (0, 1)),)
    # stem, branch a and join on core 0; branch b on core 1
    stages = [Stage("p", {0, 1}, (0,)), Stage("p", {2}, (0,)), Stage("p", {3}, (1,)),
              Stage("p", {4}, (0,))]
    return g, board, placement_from_stages(g, board, stages)


def test_a_same_core_hop_pays_its_own_wire_part_and_a_cross_core_one_does_not():
    g, boards, placement = _placement()
    cost = PlacementCoster(g, boards, "gige", runtime=CROSS,
                           same_core_runtime=SAME).evaluate(placement)
    wire = {(e.source, e.target): e.latency_ms for e in cost.edges}
    assert math.isclose(wire[(0, 1)], 0.7 + 2e-6 * EDGE_BYTES)  # core 0 to core 0
    assert math.isclose(wire[(1, 3)], 0.7 + 2e-6 * EDGE_BYTES)
    assert math.isclose(wire[(0, 2)], 0.3 + 1e-6 * EDGE_BYTES)  # core 0 to core 1
    assert math.isclose(wire[(2, 3)], 0.3 + 1e-6 * EDGE_BYTES)


def test_without_a_same_core_cost_every_hop_in_a_board_pays_the_runtime_costs_wire():
    g, boards, placement = _placement()
    plain = PlacementCoster(g, boards, "gige", runtime=CROSS).evaluate(placement)
    assert all(math.isclose(e.latency_ms, 0.3 + 1e-6 * EDGE_BYTES) for e in plain.edges)
    charged = PlacementCoster(g, boards, "gige", runtime=CROSS,
                              same_core_runtime=SAME).evaluate(placement)
    # the frame's longest path grows by the dearer wire of the same-core hops it crosses
    t = [s.compute_ms for s in charged.stages]
    same, cross = 0.7 + 2e-6 * EDGE_BYTES, 0.3 + 1e-6 * EDGE_BYTES
    ends = [t[0], 0.0, 0.0, 0.0]
    ends[1] = ends[0] + same + t[1]
    ends[2] = ends[0] + cross + t[2]
    ends[3] = max(ends[1] + same, ends[2] + cross, ends[1]) + t[3]
    assert charged.latency_ms > plain.latency_ms
    # and the source's and sink's hops: stem and join are on core 0, where emulate pins the
    # source and the sink
    end_hops = 2 * (same - cross)
    assert math.isclose(charged.latency_ms - plain.latency_ms,
                        ends[3] - _plain_end(t, plain) + end_hops, rel_tol=1e-9)


def _plain_end(t, plain) -> float:
    """The same frame's end with every hop at the cross-core wire (stage times unchanged)."""
    cross = 0.3 + 1e-6 * EDGE_BYTES
    assert [s.compute_ms for s in plain.stages] == t
    a = t[0] + cross + t[1]
    b = t[0] + cross + t[2]
    return max(a + cross, b + cross, a) + t[3]
