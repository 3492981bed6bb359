import pytest
from irgraphs import chain_tensor, dag_graph

from hwsched.errors import GraphError
from hwsched.ir import Layer, LayerGraph, OpKind, Tensor


def test_lookups_and_order():
    g = dag_graph([[], [0], [0], [1, 2]])
    assert [layer.name for layer in g] == ["n0", "n1", "n2", "n3"]
    assert g.consumers("n0") == ("n1", "n2")
    assert g.predecessors("n3") == ("n1", "n2")
    assert g.successors("n0") == ("n1", "n2")
    assert g.position("n2") == 2
    assert g.producer("n3").name == "n3"
    assert g.outputs == ("n3",)
    assert g.total_macs == 20 + 30 + 40


def test_tensor_bytes_and_encoding():
    t = Tensor("t", "t", (1, 8, 8, 16), "float32")
    assert t.bytes == 4096
    assert t.bytes_as("int8") == 1024


def test_layer_consuming_a_tensor_twice_is_one_consumer():
    x = chain_tensor("x")
    sq = Layer("sq", OpKind.ELEMENTWISE, ("x", "x"), (chain_tensor("sq"),))
    g = LayerGraph("g", (Layer("x", OpKind.INPUT, (), (x,)), sq), ("sq",))
    assert g.consumers("x") == ("sq",)


def test_graph_is_immutable():
    g = dag_graph([[], [0]])
    with pytest.raises(AttributeError):
        g.name = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        g.layers[0].attrs["x"] = 1  # type: ignore[index]


@pytest.mark.parametrize(
    ("layers", "outputs", "message"),
    [
        (
            [Layer("x", OpKind.INPUT, (), (chain_tensor("x"),)),
             Layer("x", OpKind.DENSE, ("x",), (chain_tensor("y"),))],
            ("y",),
            "duplicate layer name 'x'",
        ),
        (
            [Layer("x", OpKind.INPUT, (), (chain_tensor("x"),)),
             Layer("a", OpKind.DENSE, ("b",), (chain_tensor("a"),))],
            ("a",),
            "layer 'a' consumes tensor 'b' that no earlier layer produces",
        ),
        (
            [Layer("x", OpKind.INPUT, (), (chain_tensor("x"),))],
            ("nope",),
            "output tensor 'nope' does not exist",
        ),
        (
            [Layer("x", OpKind.DENSE, (), (chain_tensor("x"),))],
            ("x",),
            "has no input layer",
        ),
        (
            [Layer("x", OpKind.INPUT, (), (Tensor("x", "other", (1,), "float32"),))],
            ("x",),
            "names producer 'other'",
        ),
    ],
)
def test_invalid_graphs_are_refused(layers, outputs, message):
    with pytest.raises(GraphError, match=message):
        LayerGraph("bad", tuple(layers), outputs)


def test_unknown_dtype_and_dynamic_shape_are_refused():
    with pytest.raises(GraphError, match="unknown dtype 'complex64'"):
        Tensor("t", "t", (1,), "complex64")
    with pytest.raises(GraphError, match="not fully known"):
        Tensor("t", "t", (1, None), "float32")  # type: ignore[arg-type]


def test_unknown_lookups_name_the_missing_thing():
    g = dag_graph([[], [0]])
    with pytest.raises(GraphError, match="no layer 'zz'"):
        g.layer("zz")
    with pytest.raises(GraphError, match="no tensor 'zz'"):
        g.tensor("zz")


def test_unscored_layers_are_listed():
    x = chain_tensor("x")
    odd = Layer("odd", OpKind.OTHER, ("x",), (chain_tensor("odd"),), macs=None, flops=None)
    g = LayerGraph("g", (Layer("x", OpKind.INPUT, (), (x,)), odd), ("odd",))
    assert [layer.name for layer in g.unscored_layers] == ["odd"]
    assert g.to_dict()["layers"][1]["macs"] is None


def test_to_dict_names_producing_layers():
    d = dag_graph([[], [0], [0], [1, 2]]).to_dict()
    assert d["layers"][3]["inputs"] == ["n1", "n2"]
    assert d["layers"][3]["op"] == "dense"


def test_input_layers_must_come_first():
    x, y = chain_tensor("x"), chain_tensor("y")
    layers = (
        Layer("x", OpKind.INPUT, (), (x,)),
        Layer("a", OpKind.DENSE, ("x",), (chain_tensor("a"),)),
        Layer("y", OpKind.INPUT, (), (y,)),
        Layer("b", OpKind.ELEMENTWISE, ("a", "y"), (chain_tensor("b"),)),
    )
    with pytest.raises(GraphError, match="input layer 'y' must come before"):
        LayerGraph("g", layers, ("b",))
