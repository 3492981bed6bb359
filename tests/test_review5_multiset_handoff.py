"""The multiset searches (``assign="auto"`` beyond ``ORDER_LIMIT`` orders) with the runner's
hand-off charged: their optimum equals brute force over every order and split, each charged
by ``with_runtime_cost`` (the oracle). The hand-off's share depends on the bytes at a stage's
end, which are not monotone in the end, so a stage's feasible ends are no interval and its
latency no prefix difference."""

from __future__ import annotations

import itertools

import pytest

from hwsched.costs.runtime import RuntimeCost
from hwsched.hardware import load_link
from hwsched.ir import Layer, LayerGraph, OpKind, Tensor
from hwsched.schedule import assign, evaluate, rank_splits
from hwsched.schedule.handoff import with_runtime_cost
from hwsched.schedule.sweep import with_bandwidth

COST = RuntimeCost.asymmetric(sender=(0.4, 2e-4), receiver=(0.3, 3e-4), wire=(0.05, 1e-6))
#: A link so fast that only the hand-off tells cuts apart by their bytes.
FAST = with_bandwidth(load_link("gige"), 1e7)
HW = 16


def _conv(name: str, previous: str, cin: int, cout: int) -> Layer:
    macs = HW * HW * 9 * cin * cout
    params = 9 * cin * cout + cout
    return Layer(name, OpKind.CONV2D, (previous,),
                 (Tensor(name, producer=name, shape=(1, HW, HW, cout), dtype="float32"),),
                 params=params, weight_bytes=4 * params, macs=macs, flops=2 * macs)


def _bottleneck_graph(wide_tail: bool) -> LayerGraph:
    """Wide, narrow (2 channels), wide: only the cut after ``narrow`` sends little, and the
    layers before it are heavy, after it light (so which board takes which side matters);
    ``wide_tail`` adds a second wide layer at the end."""
    source = Tensor("input", producer="input", shape=(1, HW, HW, 64), dtype="float32")
    layers = (Layer("input", OpKind.INPUT, (), (source,)), _conv("wide1", "input", 64, 64),
              _conv("narrow", "wide1", 64, 2), _conv("wide2", "narrow", 2, 64))
    if wide_tail:
        layers += (_conv("wide3", "wide2", 64, 64),)
    return LayerGraph("bottleneck", layers, outputs=(layers[-1].name,))


def _brute_force(graph, boards, objective) -> float:
    values = []
    for order in set(itertools.permutations(boards)):
        for cuts in itertools.combinations(range(1, len(graph)), len(order) - 1):
            charged = with_runtime_cost(graph, evaluate(graph, list(order), FAST, cuts), COST)
            if charged.feasible:
                values.append(charged.objective_value(objective))
    return min(values)


@pytest.mark.parametrize("objective", ["throughput", "latency"])
@pytest.mark.parametrize("boards", [["rpi4", "rpi5"], ["rpi4", "jetson_orin_nano_cpu"]])
@pytest.mark.parametrize("wide_tail", [False, True])
def test_multiset_search_with_handoff_equals_brute_force(monkeypatch, objective, boards,
                                                         wide_tail):
    monkeypatch.setattr(assign, "ORDER_LIMIT", 0)  # the multiset search, not every order
    graph = _bottleneck_graph(wide_tail)
    ranking = rank_splits(graph, boards, FAST, objective=objective, assign="auto", stages=2,
                          runtime=COST)
    assert ranking.best.objective_value(objective) == pytest.approx(
        _brute_force(graph, boards, objective), rel=1e-9)
