"""The runner's hand-off cost inside the chain search: for any number of boards the search's
optimum equals brute force over every split, each charged by ``with_runtime_cost`` (the
oracle, which charges one evaluated candidate from its own bytes)."""

from __future__ import annotations

import itertools

import pytest

from hwsched.costs.runtime import RuntimeCost
from hwsched.schedule import evaluate, rank_splits
from hwsched.schedule.handoff import with_runtime_cost
from hwsched.schedule.synthetic import synthetic_graph

#: Large enough per byte that it moves the optimum (a cut that sends less wins).
COST = RuntimeCost.asymmetric(sender=(0.4, 2e-5), receiver=(0.3, 3e-5), wire=(0.05, 1e-6))


def _brute_force(graph, platforms, objective, precision=None):
    best = None
    layers = len(graph)
    for cuts in itertools.combinations(range(1, layers), len(platforms) - 1):
        candidate = with_runtime_cost(graph, evaluate(graph, platforms, "gige", cuts,
                                                      precision=precision), COST)
        if not candidate.feasible:
            continue
        value = candidate.objective_value(objective)
        if best is None or value < best[0] - 1e-12:
            best = (value, cuts)
    return best


@pytest.mark.parametrize("platforms", [["rpi4", "rpi5", "rpi4"], ["rpi5", "rpi4", "rpi4"]])
@pytest.mark.parametrize("objective", ["throughput", "latency"])
@pytest.mark.parametrize("seed", [2, 5])
def test_three_board_search_with_handoff_equals_brute_force(platforms, objective, seed):
    graph = synthetic_graph(14, seed=seed)
    ranking = rank_splits(graph, platforms, "gige", objective=objective, runtime=COST)
    value, _ = _brute_force(graph, platforms, objective)
    assert ranking.best.objective_value(objective) == pytest.approx(value, rel=1e-9)
    # and what it reports for its best is the oracle's charge of that split
    oracle = with_runtime_cost(graph, evaluate(graph, platforms, "gige",
                                               ranking.best.cut_positions), COST)
    assert [s.cost.latency_ms for s in ranking.best.stages] == pytest.approx(
        [s.cost.latency_ms for s in oracle.stages])
    assert ranking.best.latency_ms == pytest.approx(oracle.latency_ms)


def test_mixed_precisions_are_charged_with_the_bytes_each_board_sends():
    graph = synthetic_graph(12, seed=3)
    platforms = ["rpi4", "rpi5", "rpi4"]
    precision = {"rpi4": "int8", "rpi5": "fp32"}
    ranking = rank_splits(graph, platforms, "gige", precision=precision, runtime=COST)
    value, _ = _brute_force(graph, platforms, "throughput", precision)
    assert ranking.best.objective_value("throughput") == pytest.approx(value, rel=1e-9)


def test_the_handoff_moves_the_optimum_so_the_test_can_fail():
    """Without the charge inside the search the 3-board optimum differs from brute force
    over charged splits (on this graph), so the tests above check something."""
    graph = synthetic_graph(14, seed=5)
    platforms = ["rpi4", "rpi5", "rpi4"]
    uncharged = rank_splits(graph, platforms, "gige", top=1).best
    value, cuts = _brute_force(graph, platforms, "throughput")
    charged_then = with_runtime_cost(graph, uncharged, COST)
    assert uncharged.cut_positions != cuts
    assert charged_then.objective_value("throughput") > value


def test_assigning_boards_with_handoff_equals_brute_force_over_orders_and_cuts():
    graph = synthetic_graph(12, seed=6)
    boards = ["rpi4", "rpi5", "rpi4"]
    ranking = rank_splits(graph, boards, "gige", assign="auto", runtime=COST)
    best = min(_brute_force(graph, list(order), "throughput")[0]
               for order in set(itertools.permutations(boards)))
    assert ranking.best.objective_value("throughput") == pytest.approx(best, rel=1e-9)
