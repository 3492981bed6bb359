import networkx as nx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from irgraphs import brute_force_crossing, brute_force_on_every_path, dag_graph

from hwsched.cuts import (
    crossing_at,
    cut_at_layer,
    dominating_layers,
    enumerate_cuts,
    rank_by_proxy,
)
from hwsched.errors import CutError


@st.composite
def random_dags(draw, max_nodes=14):
    """Random DAGs in topological order: 1-2 inputs, each later node has 1-3 predecessors."""
    n_inputs = draw(st.integers(1, 2))
    n = draw(st.integers(n_inputs + 1, max_nodes))
    preds = [[] for _ in range(n_inputs)]
    for i in range(n_inputs, n):
        k = draw(st.integers(1, min(3, i)))
        preds.append(sorted(set(draw(st.lists(st.integers(0, i - 1), min_size=k, max_size=k)))))
    widths = draw(st.lists(st.integers(1, 64), min_size=n, max_size=n))
    return dag_graph(preds, n_inputs=n_inputs, widths=widths)


def test_residual_block_carries_both_tensors():
    #   n0 -> n1 -> n2 -> n3(add n0, n2) -> n4
    g = dag_graph([[], [0], [1], [0, 2], [3]])
    cuts = enumerate_cuts(g)
    assert [c.head_layers for c in cuts] == [1, 2, 3, 4]
    assert [[t.name for t in c.crossing] for c in cuts] == [
        ["n0"], ["n0", "n1"], ["n0", "n2"], ["n3"]
    ]
    assert cuts[1].transfer_bytes == 2 * 16


def test_squeeze_excite_branch_carries_three_tensors():
    # x -> a ; squeeze branch a -> p -> q ; scale(a, q) ; plus a skip from x to the end
    g = dag_graph([[], [0], [1], [2], [1, 3], [0, 4]])
    crossing = [[t.name for t in c.crossing] for c in enumerate_cuts(g)]
    assert crossing[2] == ["n0", "n1", "n2"]  # after the first squeeze layer


def test_model_output_produced_in_the_head_crosses():
    # two outputs: n2 from the head and n3 from the tail
    g = dag_graph([[], [0], [1], [1]])
    assert g.outputs == ("n2", "n3")
    assert [t.name for t in crossing_at(g, 3)] == ["n1", "n2"]


def test_macs_split_between_head_and_tail():
    g = dag_graph([[], [0], [1]], macs=[0, 5, 7])
    cut = enumerate_cuts(g)[1]
    assert (cut.head_macs, cut.tail_macs) == (5, 7)


def test_nonexistent_position_and_layer_are_errors():
    g = dag_graph([[], [0], [1]])
    with pytest.raises(CutError, match="cut position 3 does not exist .* valid positions are 1..2"):
        crossing_at(g, 3)
    with pytest.raises(CutError, match="no cut point after layer 'n2'"):
        cut_at_layer(enumerate_cuts(g), "n2")
    assert cut_at_layer(enumerate_cuts(g), "n1").head_layers == 2


def test_proxy_ranking_prefers_balance_then_bytes_and_filters():
    g = dag_graph([[], [0], [1], [0, 2], [3]], macs=[0, 10, 10, 10, 10])
    ranked = rank_by_proxy(enumerate_cuts(g))
    assert ranked[0].head_layers == 3  # 20 / 20 MACs
    single = rank_by_proxy(enumerate_cuts(g), max_crossing=1)
    assert all(len(c.crossing) == 1 for c in single)
    assert [c.head_layers for c in single] == [4, 1]


@settings(max_examples=300, deadline=None)
@given(random_dags())
def test_crossing_sets_match_the_definition(g):
    for cut in enumerate_cuts(g):
        assert {t.name for t in cut.crossing} == brute_force_crossing(g, cut.head_layers)
        assert cut.crossing == crossing_at(g, cut.head_layers)


@settings(max_examples=300, deadline=None)
@given(random_dags())
def test_single_tensor_cuts_are_exactly_the_layers_on_every_path(g):
    on_every_path = brute_force_on_every_path(g)
    assert dominating_layers(g) == on_every_path
    single = {c.after for c in enumerate_cuts(g) if c.single_tensor}
    assert single == on_every_path - {g.layers[-1].name}


@settings(max_examples=200, deadline=None)
@given(random_dags(max_nodes=30))
def test_dominators_agree_with_networkx(g):
    dg = nx.DiGraph()
    for layer in g.layers:
        dg.add_node(layer.name)
        for pred in g.predecessors(layer.name):
            dg.add_edge(pred, layer.name)
    for layer in g.input_layers:
        dg.add_edge("SOURCE", layer.name)
    for out in g.outputs:
        dg.add_edge(g.tensor(out).producer, "SINK")
    idom = nx.immediate_dominators(dg, "SOURCE")
    expected, node = set(), idom["SINK"]
    while node != "SOURCE":
        expected.add(node)
        node = idom[node]
    assert dominating_layers(g) == expected
