"""Placement records: derived edges, chain constructor, validation (oracle: the definition)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwsched.cuts import crossing_at
from hwsched.errors import PlacementError
from hwsched.placement import (
    Board,
    Edge,
    EdgeTensor,
    Placement,
    Region,
    Stage,
    chain_placement,
    check_placement,
    placement_from_stages,
)
from tests.irgraphs import dag_graph

FORK = [[], [0], [1], [1], [2], [3], [4, 5]]
BOARDS = (Board("a", "rpi4"), Board("b", "rpi4"), Board("c", "jetson_nano"))


@st.composite
def graphs_and_assignments(draw):
    n = draw(st.integers(3, 9))
    preds = [[]]
    for i in range(1, n):
        preds.append(sorted(draw(st.sets(st.integers(0, i - 1), min_size=1, max_size=2))))
    owners = draw(st.lists(st.integers(0, 2), min_size=n, max_size=n))
    return dag_graph(preds), owners


@settings(max_examples=60, deadline=None)
@given(graphs_and_assignments())
def test_derived_edges_carry_exactly_the_tensors_that_change_stage(case):
    graph, owners = case
    stages = [Stage(BOARDS[k].name, {i for i, o in enumerate(owners) if o == k})
              for k in range(3) if k in owners]
    try:
        placement = placement_from_stages(graph, BOARDS, stages)
    except PlacementError as error:
        assert "cycle" in str(error)
        return
    where = {graph.layers[p].name: i for i, s in enumerate(placement.stages) for p in s.layers}
    expected = {
        (where[t.producer], where[user], t.name)
        for t in graph.tensors.values() for user in graph.consumers(t.name)
        if where[t.producer] != where[user]
    }
    got = {(e.source, e.target, n) for e in placement.edges for n in e.tensor_names}
    assert got == expected
    assert all(e.source < e.target for e in placement.edges)  # topological stage order


def test_chain_placement_edges_are_the_crossings():
    g = dag_graph(FORK)
    p = chain_placement(g, BOARDS, (2, 5))
    assert p.kind == "chain" and [s.positions for s in p.stages] == [(0, 1), (2, 3, 4), (5, 6)]
    assert [e.tensor_names for e in p.edges] == [
        tuple(t.name for t in crossing_at(g, c)) for c in (2, 5)
    ]
    # n3 is made in stage 1 and used in stage 2; n4 too
    assert set(p.edges[1].tensor_names) == {"n3", "n4"}
    with pytest.raises(PlacementError, match="do not split 7 layers into 3"):
        chain_placement(g, BOARDS, (2, 2))


def test_a_stage_needing_a_tensor_nobody_sends_is_named():
    g = dag_graph(FORK)
    good = chain_placement(g, BOARDS[:2], (3,))
    broken = Placement(g.name, good.boards, good.stages, (), good.sink)
    with pytest.raises(PlacementError, match=r"stage 1 \(b\) consumes tensor 'n1', which no "
                       "earlier stage sends it"):
        check_placement(g, broken)
    wrong_order = Placement(g.name, good.boards, good.stages,
                            (Edge(1, 0, (EdgeTensor("n1"),)),), good.sink)
    with pytest.raises(PlacementError, match="not earlier"):
        check_placement(g, wrong_order)


def test_core_sets_on_one_board_are_equal_or_disjoint():
    g = dag_graph(FORK)
    boards = (Board("a", "rpi4", (0, 1, 2)),)
    ok = [Stage("a", {0, 1, 2, 4}, (0,)), Stage("a", {3, 5, 6}, (1, 2))]
    placement_from_stages(g, boards, ok)
    with pytest.raises(PlacementError, match="core 1 of board 'a' is also in"):
        placement_from_stages(g, boards, [Stage("a", {0, 1, 2, 4}, (0, 1)),
                                          Stage("a", {3, 5, 6}, (1, 2))])
    with pytest.raises(PlacementError, match=r"cores \[7\] are not among"):
        placement_from_stages(g, boards, [Stage("a", set(range(7)), (7,))])


def test_regions_must_lie_inside_their_tensor():
    g = dag_graph(FORK)
    Region(((0, 1), (0, 2))).check(g.tensor("n1"))
    for bounds in (((0, 1), (0, 5)), ((0, 1),), ((0, 1), (2, 2))):
        with pytest.raises(PlacementError, match="is not inside tensor 'n1'"):
            Region(bounds).check(g.tensor("n1"))


def test_every_chain_split_is_a_valid_placement():
    g = dag_graph(FORK)
    for cuts in itertools.combinations(range(1, 7), 2):
        assert chain_placement(g, BOARDS, cuts).stages[0].is_slice()


def test_docstring_examples_run():
    import doctest

    import hwsched.costs.placement
    import hwsched.mapping
    import hwsched.placement

    for module in (hwsched.placement, hwsched.mapping, hwsched.costs.placement):
        result = doctest.testmod(module)
        assert result.attempted > 0 and result.failed == 0
