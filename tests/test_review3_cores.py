"""Review: a stage without a core set runs on its whole board, so it shares that board's time
with the board's other stages (hand-computed busy times as the oracle)."""

from __future__ import annotations

import math

import pytest

from hwsched.costs.placement import PlacementCoster
from hwsched.errors import PlacementError
from hwsched.placement import Board, Stage, placement_from_stages
from tests.irgraphs import dag_graph

# x -> a, x -> b, (a, b) -> add
FORK = dag_graph([[], [0], [0], [1, 2]], widths=[8] * 4, macs=[0, 10_000_000, 10_000_000, 10])


def test_a_whole_board_stage_beside_a_core_set_stage_is_refused():
    """It was costed as a resource of its own ('p' beside 'p[0]'), as if the board had a
    spare copy of core 0, and the period came out too short."""
    boards = (Board("p", "rpi4"),)
    stages = [Stage("p", {0, 1}, (0,)), Stage("p", {2}), Stage("p", {3}, (0,))]
    with pytest.raises(PlacementError, match=r"stage 1 \(p\) has no core set but another"):
        placement_from_stages(FORK, boards, stages)


def test_a_stage_without_cores_shares_the_board_s_listed_cores():
    boards = (Board("p", "rpi4", (0, 1)),)
    stages = [Stage("p", {0, 1}, (0, 1)), Stage("p", {2}), Stage("p", {3})]
    coster = PlacementCoster(FORK, boards, "gige")
    cost = coster.evaluate(placement_from_stages(FORK, boards, stages))
    total = sum(s.compute_ms for s in cost.stages)
    assert dict(cost.busy_ms) == pytest.approx({"p[0,1]": total})
    assert math.isclose(cost.period_ms, total, rel_tol=1e-12)
