"""A stage graph charges each edge's sending end to the sending core and its receiving end to
the receiving one, as a chain does, when the two ends cost differently.

``profile --hop-cost`` measures the two ends apart (:meth:`RuntimeCost.asymmetric`); the chain
charges a stage ``receiver(in) + sender(out)``, but the placement cost charged every edge the
mean of the two ends on both cores, so a chain placement no longer cost what the chain costs
and a graph stage receiving a large tensor and sending a small one was charged the wrong share.
The oracle is the chain evaluator's :func:`~hwsched.schedule.refine.with_runtime_cost`, and a
hand count on a four-stage graph.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwsched.costs.placement import PlacementCoster
from hwsched.costs.runtime import RuntimeCost
from hwsched.placement import Board, Stage, chain_placement, placement_from_stages
from hwsched.schedule import evaluate
from hwsched.schedule.refine import with_runtime_cost
from hwsched.schedule.synthetic import synthetic_graph
from tests.irgraphs import dag_graph

#: Sending costs ten times receiving per byte, receiving five times sending per frame.
UNEVEN = RuntimeCost.asymmetric(sender=(0.01, 2e-5), receiver=(0.05, 2e-6), wire=(0.0, 0.0))


@settings(max_examples=25, deadline=None)
@given(st.integers(4, 30), st.integers(0, 50), st.integers(2, 3), st.data())
def test_a_chain_placement_pays_each_end_on_its_own_core(n_layers, seed, k, data):
    graph = synthetic_graph(n_layers, seed=seed)
    cuts = tuple(sorted(data.draw(st.sets(st.integers(1, n_layers - 1), min_size=k - 1,
                                          max_size=k - 1))))
    platforms = ["rpi4", "jetson_nano", "rpi5"][:k]
    chain = with_runtime_cost(graph, evaluate(graph, platforms, "gige", cuts,
                                              precision="fp32"), UNEVEN)
    boards = tuple(Board(p, p) for p in platforms)
    coster = PlacementCoster(graph, boards, "gige", runtime=UNEVEN, precision="fp32")
    cost = coster.evaluate(chain_placement(graph, boards, cuts))
    assert [s.compute_ms for s in cost.stages] == pytest.approx(
        [s.cost.latency_ms for s in chain.stages], rel=1e-9)
    assert cost.period_ms == pytest.approx(chain.period_ms, rel=1e-9)


def test_a_graph_stage_pays_the_receiving_end_of_what_it_receives():
    # x -> s -> (a, b) -> add; b on board q, the rest on p (a in a stage of its own)
    graph = dag_graph([[], [0], [1], [1], [2, 3]], widths=[100, 1000, 3000, 5000, 7],
                      macs=[0, 10, 50_000_000, 50_000_000, 10])
    boards = (Board("p", "rpi4"), Board("q", "rpi4"))
    stages = [Stage("p", {0, 1}), Stage("p", {2}), Stage("q", {3}), Stage("p", {4})]
    cost = PlacementCoster(graph, boards, "gige", runtime=UNEVEN).evaluate(
        placement_from_stages(graph, boards, stages))

    def send(floats):
        return 0.01 + 4 * floats * 2e-5

    def receive(floats):
        return 0.05 + 4 * floats * 2e-6

    expected = [
        send(100) + receive(100) + 2 * send(1000),   # source's hop; s sent to stages 1 and 2
        receive(1000) + send(3000),                  # receives s, sends a
        receive(1000) + send(5000),                  # receives s, sends b (over the link)
        receive(3000) + receive(5000) + send(7) + receive(7),  # the sink's hop
    ]
    assert [s.runtime_ms for s in cost.stages] == pytest.approx(expected, rel=1e-9)
