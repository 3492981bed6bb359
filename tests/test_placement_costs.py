"""The DAG cost model: hand-computed small cases, and equality with the chain evaluator."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwsched.costs.placement import PlacementCoster
from hwsched.costs.transfer import framed
from hwsched.hardware import load_link, load_platform
from hwsched.placement import Board, Stage, chain_placement, placement_from_stages
from hwsched.schedule import evaluate
from hwsched.schedule.synthetic import synthetic_graph
from tests.irgraphs import dag_graph

REL = 1e-9


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=REL, abs_tol=1e-12)


@st.composite
def chain_cases(draw):
    n_layers = draw(st.integers(4, 30))
    graph = synthetic_graph(n_layers, seed=draw(st.integers(0, 50)))
    names = draw(st.permutations(["rpi4", "jetson_nano", "coral_edgetpu", "stm32h7"]))
    k = draw(st.integers(1, 3))
    cuts = sorted(draw(st.sets(st.integers(1, n_layers - 1), min_size=k - 1, max_size=k - 1)))
    memory = draw(st.sampled_from(["arena", "largest_tensor"]))
    precision = draw(st.sampled_from([None, "fp32", "int8"]))
    return graph, list(names[:k]), tuple(cuts), memory, precision


@settings(max_examples=60, deadline=None)
@given(chain_cases())
def test_chain_placements_cost_exactly_what_the_chain_evaluator_says(case):
    graph, platforms, cuts, memory, precision = case
    chain = evaluate(graph, platforms, "gige", cuts, memory_model=memory, precision=precision)
    boards = tuple(Board(p, p) for p in platforms)
    coster = PlacementCoster(graph, boards, "gige", memory_model=memory, precision=precision)
    cost = coster.evaluate(chain_placement(graph, boards, cuts))
    assert _close(cost.latency_ms, chain.latency_ms)
    assert _close(cost.period_ms, chain.period_ms)
    assert _close(cost.energy_mj, chain.energy_mj)
    assert cost.feasible == chain.feasible
    for mine, theirs in zip(cost.stages, chain.stages, strict=True):
        c = theirs.cost
        assert _close(mine.compute_ms, c.latency_ms)
        assert (mine.weights_bytes, mine.peak_activation_bytes, mine.macs) == (
            c.weights_bytes, c.peak_activation_bytes, c.macs)
        assert mine.fits_memory == c.fits_memory
        assert _close(mine.energy_mj + cost.period_ms * _idle(theirs.cost.platform),
                      theirs.energy_mj)
    for mine, theirs in zip(cost.edges, chain.links, strict=True):
        assert (mine.transfer_bytes, mine.wire_bytes, mine.dtype, mine.messages) == (
            theirs.transfer_bytes, theirs.wire_bytes, theirs.dtype, theirs.messages)
        assert _close(mine.latency_ms, theirs.latency_ms)
        assert _close(mine.energy_mj, theirs.energy_mj)


def _idle(platform: str) -> float:
    return load_platform(platform).idle_power_w


# A diamond with a stem: x -> s -> (a, b) -> add.  Hand-computed from the coster's per-stage
# compute_ms (sums of roofline layer times, checked against the chain evaluator above) and link
# times from the transfer model directly.
DIAMOND = [[], [0], [1], [1], [2, 3]]


def _diamond_parts():
    g = dag_graph(DIAMOND, widths=[256] * 5, macs=[0, 10, 50_000_000, 50_000_000, 10])
    boards = (Board("p", "rpi4"), Board("q", "rpi4"))
    stages = [Stage("p", {0, 1}), Stage("p", {2}), Stage("q", {3}), Stage("p", {4})]
    return g, boards, placement_from_stages(g, boards, stages)


def test_branch_parallel_latency_is_the_longest_path():
    g, boards, placement = _diamond_parts()
    coster = PlacementCoster(g, boards, "gige")
    cost = coster.evaluate(placement)
    t = [s.compute_ms for s in cost.stages]
    send = framed(load_link("gige"), 256 * 4, 1).latency_ms
    # s goes to stage 1 (same board: free) and to q; b comes back to p
    assert [(e.source, e.target, e.link) for e in cost.edges] == [
        (0, 1, None), (0, 2, "gige"), (1, 3, None), (2, 3, "gige")]
    assert cost.edges[0].latency_ms == 0.0 and cost.edges[0].transfer_bytes == 256 * 4
    expected = t[0] + max(t[1], send + t[2] + send) + t[3]
    assert _close(cost.latency_ms, expected)
    # p runs stages 0, 1 and 3, q stage 2; each direction is its own link
    assert _close(cost.busy_ms["p"], t[0] + t[1] + t[3]) and _close(cost.busy_ms["q"], t[2])
    assert _close(cost.period_ms, max(t[0] + t[1] + t[3], t[2], send))
    # a single rpi4 doing everything: one stage; the branches really overlap
    alone = coster.evaluate(placement_from_stages(g, boards[:1], [Stage("p", range(5))]))
    assert alone.latency_ms > 1.5 * cost.latency_ms


def test_stages_sharing_a_board_run_one_after_another():
    g, _, _ = _diamond_parts()
    boards = (Board("p", "rpi4"),)
    stages = [Stage("p", {0, 1}), Stage("p", {2}), Stage("p", {3}), Stage("p", {4})]
    placement = placement_from_stages(g, boards, stages)
    cost = PlacementCoster(g, boards, "gige").evaluate(placement)
    t = [s.compute_ms for s in cost.stages]
    assert _close(cost.latency_ms, sum(t)) and _close(cost.period_ms, sum(t))
    assert all(e.link is None and e.latency_ms == 0.0 for e in cost.edges)
    assert [(s.start_ms, s.end_ms) for s in cost.stages] == list(
        itertools.pairwise(itertools.accumulate([0.0, *t])))


def test_disjoint_core_sets_divide_the_board_and_run_side_by_side():
    g, _, _ = _diamond_parts()
    whole = (Board("p", "rpi4", (0, 1, 2, 3)),)
    split = [Stage("p", {0, 1}, (0, 1)), Stage("p", {2}, (0, 1)), Stage("p", {3}, (2, 3)),
             Stage("p", {4}, (0, 1))]
    one = [Stage("p", {0, 1}), Stage("p", {2}), Stage("p", {3}), Stage("p", {4})]
    coster = PlacementCoster(g, whole, "gige")
    base = coster.evaluate(placement_from_stages(g, whole, one))
    cost = coster.evaluate(placement_from_stages(g, whole, split))
    for mine, full in zip(cost.stages, base.stages, strict=True):
        assert _close(mine.compute_ms, 2 * full.compute_ms)  # 2 of 4 cores
    t = [s.compute_ms for s in cost.stages]
    assert _close(cost.latency_ms, t[0] + max(t[1], t[2]) + t[3])
    assert _close(cost.busy_ms["p[0,1]"], t[0] + t[1] + t[3])
    assert _close(cost.busy_ms["p[2,3]"], t[2])


def test_memory_of_a_board_adds_its_stages_and_is_checked():
    g = dag_graph(DIAMOND, widths=[4_000_000] * 5)
    boards = (Board("m", "stm32h7"),)
    cost = PlacementCoster(g, boards, "gige").evaluate(
        placement_from_stages(g, boards, [Stage("m", {0, 1}), Stage("m", {2, 3, 4})]))
    assert cost.memory_bytes["m"] == sum(s.memory_bytes for s in cost.stages)
    assert not cost.feasible and "board 'm'" in cost.reasons[0]


def test_a_region_on_an_edge_costs_only_its_bytes():
    from hwsched.placement import Edge, EdgeTensor, Region

    g, boards, _ = _diamond_parts()
    coster = PlacementCoster(g, boards, "gige")
    whole = coster.edge_payload(Edge(0, 1, (EdgeTensor("n0"),)), "float32")
    part = coster.edge_payload(Edge(0, 1, (EdgeTensor("n0", Region(((0, 1), (0, 64)))),)),
                               "float32")
    assert (whole, part) == (256 * 4, 64 * 4)


@pytest.mark.parametrize("memory", ["arena", "largest_tensor"])
def test_a_graph_stage_peak_never_exceeds_the_whole_model_arena(memory):
    from hwsched.costs import get_model

    g = synthetic_graph(24, seed=3)
    boards = (Board("p", "rpi4"), Board("q", "rpi4"))
    coster = PlacementCoster(g, boards, "gige", memory_model=memory)
    whole_peak = int(get_model("memory", memory)(g, "fp32").live_bytes.max())
    stages = [Stage("p", range(0, 10)), Stage("q", range(10, 24))]
    cost = coster.evaluate(placement_from_stages(g, boards, stages))
    assert all(0 < s.peak_activation_bytes <= whole_peak for s in cost.stages)
