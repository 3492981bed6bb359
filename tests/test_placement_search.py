"""The graph search: it finds the branch-parallel placement by itself (brute force as oracle),
and its dynamic program adds up exactly what the placement evaluator computes."""

from __future__ import annotations

import itertools
import math

from hypothesis import given, settings
from hypothesis import strategies as st

from hwsched.costs.placement import PlacementCoster
from hwsched.errors import PlacementError
from hwsched.placement import Board, Stage, placement_from_stages
from hwsched.schedule.graph_search import find_blocks, search_graph_placements
from tests.irgraphs import dag_graph

# x -> s -> (a1 -> a2), (b1 -> b2) -> add: two heavy branches of equal cost
BALANCED = [[], [0], [1], [2], [1], [4], [3, 5]]
HEAVY = 30_000_000


def _balanced():
    return dag_graph(BALANCED, widths=[64] * 7, macs=[0, 10, HEAVY, HEAVY, HEAVY, HEAVY, 10])


def _set_partitions(items):
    if not items:
        yield []
        return
    first, rest = items[0], items[1:]
    for partition in _set_partitions(rest):
        for k in range(len(partition)):
            yield [*partition[:k], [first, *partition[k]], *partition[k + 1:]]
        yield [[first], *partition]


def _brute_force_min_latency(graph, boards, coster) -> float:
    """Every placement: every partition of the layers into stages, every board per stage."""
    best = math.inf
    for partition in _set_partitions(list(range(len(graph)))):
        for assignment in itertools.product([b.name for b in boards], repeat=len(partition)):
            stages = [Stage(b, frozenset(s)) for b, s in zip(assignment, partition, strict=True)]
            try:
                placement = placement_from_stages(graph, boards, stages)
            except PlacementError:
                continue  # the stages form a cycle
            best = min(best, coster.evaluate(placement).latency_ms)
    return best


def test_search_finds_the_branch_parallel_placement_brute_force_finds():
    graph = _balanced()
    boards = (Board("a", "rpi4"), Board("b", "rpi4"))
    coster = PlacementCoster(graph, boards, "gige")
    report = search_graph_placements(coster, boards)
    best = min(report.candidates, key=lambda c: c.latency_ms)
    assert math.isclose(best.latency_ms, _brute_force_min_latency(graph, boards, coster),
                        rel_tol=1e-9)
    # it is branch-parallel: the two heavy branches run on different boards
    where = {p: s.board for s in best.placement.stages for p in s.layers}
    assert where[2] == where[3] != where[4] == where[5]
    alone = coster.evaluate(placement_from_stages(graph, boards[:1], [Stage("a", range(7))]))
    assert alone.latency_ms / best.latency_ms > 1.8


def test_blocks_split_at_single_tensor_cuts_into_branches():
    blocks = find_blocks(_balanced())
    assert [(b.first, b.stop, b.join) for b in blocks] == [(0, 1, None), (1, 2, None), (2, 7, 6)]
    assert blocks[-1].branches == (frozenset({2, 3}), frozenset({4, 5}))


@st.composite
def fork_join_graphs(draw):
    """A stem, then 1-3 fork-join blocks of 2-3 branches of 1-2 layers, random costs."""
    preds, last = [[], [0]], 1
    for _ in range(draw(st.integers(1, 3))):
        ends = []
        for _ in range(draw(st.integers(2, 3))):
            prev = last
            for _ in range(draw(st.integers(1, 2))):
                preds.append([prev])
                prev = len(preds) - 1
            ends.append(prev)
        residual = draw(st.booleans())
        preds.append(sorted(ends + ([last] if residual else [])))
        last = len(preds) - 1
    n = len(preds)
    macs = [0, *draw(st.lists(st.integers(10, 20_000_000), min_size=n - 1, max_size=n - 1))]
    widths = draw(st.lists(st.integers(1, 50_000), min_size=n, max_size=n))
    return dag_graph(preds, widths=widths, macs=macs)


@settings(max_examples=40, deadline=None)
@given(fork_join_graphs(), st.sampled_from(["rpi4", "jetson_nano"]))
def test_the_dynamic_program_adds_up_what_the_evaluator_computes(graph, second):
    boards = (Board("a", "rpi4"), Board("b", second))
    coster = PlacementCoster(graph, boards, "gige")
    report = search_graph_placements(coster, boards)
    best = min(c.latency_ms for c in report.candidates)
    assert math.isclose(best, report.latency_optimum_ms, rel_tol=1e-9)
    whole = [Stage("a", range(len(graph)))]
    chain = coster.evaluate(placement_from_stages(graph, boards[:1], whole))
    assert best <= chain.latency_ms * (1 + 1e-9)  # one board alone is in the space
    assert all(c.period_ms >= report.period_lower_bound_ms * (1 - 1e-9)
               for c in report.candidates)
