"""Review 6: a graph placement and a chain split priced alike by a runtime cost with a wire part
(what ``hopcost --gap-ms`` measures), so the joint ranking compares like with like."""

from __future__ import annotations

import pytest

from hwsched.costs.placement import PlacementCoster
from hwsched.costs.runtime import RuntimeCost
from hwsched.placement import Board, chain_placement
from hwsched.schedule import evaluate
from hwsched.schedule.graph_search import search_graph_placements
from hwsched.schedule.refine import with_runtime_cost
from hwsched.schedule.synthetic import synthetic_graph

#: A paced hop: each end's share and a wire part (wake-ups) of 0.5 ms plus 1 ns per byte.
PACED = RuntimeCost.asymmetric(sender=(0.05, 2e-6), receiver=(0.05, 2e-6), wire=(0.5, 1e-6))


@pytest.mark.parametrize(("platforms", "cuts"), [(["rpi4", "jetson_nano"], (5,)),
                                                 (["rpi4", "jetson_nano", "rpi5"], (3, 8))])
def test_a_chain_placement_pays_the_source_and_sink_wire_the_chain_pays(platforms, cuts):
    """The chain evaluator adds the source's and the sink's wire to a frame's latency; the
    placement coster left both out (1 ms and more here), so every graph candidate looked that
    much faster than a chain split in the joint ranking."""
    graph = synthetic_graph(12, seed=3)
    chain = with_runtime_cost(graph, evaluate(graph, platforms, "gige", cuts), PACED)
    boards = tuple(Board(p, p) for p in platforms)
    coster = PlacementCoster(graph, boards, "gige", runtime=PACED)
    cost = coster.evaluate(chain_placement(graph, boards, cuts))
    assert cost.latency_ms == pytest.approx(chain.latency_ms, rel=1e-9)
    assert cost.period_ms == pytest.approx(chain.period_ms, rel=1e-9)


def test_the_graph_search_optimum_is_its_placements_latency_with_a_wire_part():
    graph = synthetic_graph(12, seed=3)
    boards = (Board("rpi4", "rpi4"), Board("jetson_nano", "jetson_nano"))
    coster = PlacementCoster(graph, boards, "gige", runtime=PACED)
    report = search_graph_placements(coster, boards)
    assert report.latency_optimum_ms == pytest.approx(
        min(c.latency_ms for c in report.candidates), rel=1e-9)


@pytest.mark.parametrize("spec", [
    ([2, 2], [1, 2], [False, True], [30_000_000, 4_000_000, 25_000_000, 900_000],
     [64, 5000, 120_000]),
    ([3], [2, 1, 2], [True], [15_351_982, 39_671_645, 6_860_358, 21_302_352],
     [8019, 5852, 6671]),
])
def test_the_graph_search_adds_up_what_the_coster_charges_on_edges_inside_a_board(spec):
    """The coster charges an edge inside one board the runtime cost's wire part; the search's
    dynamic program took such an edge as free (and a local branch stage's hand-off to its
    join), so at most points of the space its sum was not the placement's latency and its
    optimum was not proven. Oracle: every point of the space evaluated (test_graph_gaps)."""
    from test_graph_gaps import _check_exact, _fork_join

    graph, blocks = _fork_join(*spec)
    _check_exact(graph, blocks, PACED)


def test_analyze_reads_the_paced_cost_hopcost_prints(tmp_path):
    """The paced wire part is measured only by ``python -m hwsched.runtime.hopcost --gap-ms``,
    which prints ``{samples, runtime_cost}``; ``analyze --runtime-cost`` refused that file
    (it wanted ``frame_ms`` at the top), so the cost branch13 charges could not reach it."""
    import json

    from hwsched.costs.runtime import load_runtime_cost

    path = tmp_path / "paced.json"
    path.write_text(json.dumps({"samples": [], "runtime_cost": PACED.to_dict()}))
    assert load_runtime_cost(path).wire_ms(1000) == pytest.approx(PACED.wire_ms(1000))
