"""Which hops are priced on one core (issue 13's review): only a hop whose two ends share a
core set of exactly one CPU. Two stages of a board without cores run on CPUs of their own in
``emulate`` (stage k on CPU k mod n), and a shared set of two CPUs lets both ends run at
once, so those hops keep the cross-core wire; the source (pinned to stage 0's CPUs) and the
sink (pinned to the last stage's) share the CPU of a one-CPU first or last stage. Oracle:
latencies hand-computed from the stages' compute times and the two costs' wire parts."""

from __future__ import annotations

import math

from hwsched.costs.placement import PlacementCoster
from hwsched.costs.runtime import RuntimeCost
from hwsched.placement import Board, Stage, placement_from_stages
from tests.test_placement_costs import _diamond_parts

CROSS = RuntimeCost.asymmetric(sender=(0.1, 0.0), receiver=(0.2, 0.0), wire=(0.3, 1e-6))
SAME = RuntimeCost.asymmetric(sender=(0.1, 0.0), receiver=(0.2, 0.0), wire=(0.7, 2e-6))
#: Every tensor of the diamond (input, stem, branches, output): 256 float32 values.
TENSOR_BYTES = 256 * 4
CROSS_MS = 0.3 + 1e-6 * TENSOR_BYTES
SAME_MS = 0.7 + 2e-6 * TENSOR_BYTES


def _cost(board: Board, cores: list[tuple[int, ...] | None]):
    """The diamond (stem, branch a, branch b, join) on one board, stage k on ``cores[k]``."""
    g, _, _ = _diamond_parts()
    assert all(t.bytes == TENSOR_BYTES for t in g.tensors.values())
    layers = [{0, 1}, {2}, {3}, {4}]
    stages = [Stage(board.name, layers[k], cores[k]) for k in range(4)]
    placement = placement_from_stages(g, (board,), stages)
    return PlacementCoster(g, (board,), "gige", runtime=CROSS,
                           same_core_runtime=SAME).evaluate(placement)


def _wires(cost) -> dict[tuple[int, int], float]:
    return {(e.source, e.target): e.latency_ms for e in cost.edges}


def _serial_latency(cost, hop_ms: float, end_hop_ms: float) -> float:
    """Every stage on one resource, one after another in index order: the stem, branch a,
    branch b (its input long arrived), the join after branch b's hop; the source's and the
    sink's hops before and after."""
    t = [s.compute_ms for s in cost.stages]
    branch_b_end = t[0] + hop_ms + t[1] + t[2]
    return end_hop_ms + branch_b_end + hop_ms + t[3] + end_hop_ms


def test_a_board_without_cores_prices_every_hop_across_cores():
    cost = _cost(Board("p", "rpi4"), [None] * 4)
    assert all(math.isclose(ms, CROSS_MS) for ms in _wires(cost).values()), _wires(cost)
    assert math.isclose(cost.latency_ms, _serial_latency(cost, CROSS_MS, CROSS_MS))


def test_a_shared_set_of_two_cpus_prices_its_hops_across_cores():
    cost = _cost(Board("p", "rpi4", (0, 1, 2)), [(0, 1), (0, 1), (2,), (0, 1)])
    assert all(math.isclose(ms, CROSS_MS) for ms in _wires(cost).values()), _wires(cost)
    t = [s.compute_ms for s in cost.stages]  # branch b on its own CPU, beside branch a
    # a board's stages on a share of its cores run n / k times longer: the oracle for that
    # is test_placement_costs; here only the schedule and the hops matter
    a_end = t[0] + CROSS_MS + t[1]
    b_end = t[0] + CROSS_MS + t[2]
    join_end = max(a_end + CROSS_MS, b_end + CROSS_MS) + t[3]
    assert math.isclose(cost.latency_ms, CROSS_MS + join_end + CROSS_MS)


def test_a_shared_set_of_one_cpu_prices_its_hops_and_the_source_and_sink_on_one_core():
    cost = _cost(Board("p", "rpi4", (0, 1)), [(0,), (0,), (1,), (0,)])
    wires = _wires(cost)
    assert math.isclose(wires[(0, 1)], SAME_MS) and math.isclose(wires[(1, 3)], SAME_MS)
    assert math.isclose(wires[(0, 2)], CROSS_MS) and math.isclose(wires[(2, 3)], CROSS_MS)
    t = [s.compute_ms for s in cost.stages]
    a_end = t[0] + SAME_MS + t[1]
    b_end = t[0] + CROSS_MS + t[2]
    join_end = max(a_end + SAME_MS, b_end + CROSS_MS, a_end) + t[3]
    assert math.isclose(cost.latency_ms, SAME_MS + join_end + SAME_MS)


def test_the_source_and_sink_hops_follow_their_stages_cpu_apart():
    """Stem alone on CPU 0 (the source's), the join alone on CPU 1 (the sink's), both
    branches on CPU 2: every stage-to-stage hop across cores, both end hops on one core."""
    one = _cost(Board("p", "rpi4", (0, 1, 2)), [(0,), (2,), (2,), (1,)])
    t = [s.compute_ms for s in one.stages]
    branches_end = t[0] + CROSS_MS + t[1] + t[2]  # both branches on CPU 2, one after another
    join_end = branches_end + CROSS_MS + t[3]
    assert all(math.isclose(ms, CROSS_MS) for ms in _wires(one).values()), _wires(one)
    assert math.isclose(one.latency_ms, SAME_MS + join_end + SAME_MS)
