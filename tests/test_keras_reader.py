import keras
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from irgraphs import brute_force_crossing, brute_force_on_every_path, dag_graph
from kerasmodels import dag_model, inception_model, residual_se_model

from hwsched.cuts import dominating_layers, enumerate_cuts
from hwsched.errors import UnsupportedLayerError
from hwsched.ir import OpKind
from hwsched.load.keras_reader import read_keras_model


def test_residual_and_squeeze_excite_cuts_carry_every_tensor():
    g, _ = read_keras_model(residual_se_model())
    by_after = {c.after: c for c in enumerate_cuts(g)}
    assert [t.producer for t in by_after["res_conv"].crossing] == ["stem_relu", "res_conv"]
    assert [t.producer for t in by_after["se_reduce"].crossing] == ["res_add", "se_reduce"]
    single = {c.after for c in enumerate_cuts(g) if c.single_tensor}
    assert single == {"image", "pad", "stem", "stem_bn", "stem_relu", "res_add", "se_scale",
                      "down", "pool"}


def test_inception_block_carries_all_branches():
    g, _ = read_keras_model(inception_model())
    by_after = {c.after: c for c in enumerate_cuts(g)}
    crossing = by_after["b2a"].crossing
    assert {t.producer for t in crossing} == {"x", "b1", "b2a"}
    assert by_after["b2a"].transfer_bytes == 3 * 8 * 8 * 4 * 4
    assert dominating_layers(g) == {"x", "cat", "out"}


def test_layer_records_shapes_params_and_macs():
    g, _ = read_keras_model(residual_se_model())
    stem = g.layer("stem")
    assert stem.op is OpKind.CONV2D
    assert stem.outputs[0].shape == (1, 8, 8, 8)
    assert stem.params == 3 * 3 * 3 * 8 + 8
    assert stem.weight_bytes == 4 * stem.params
    assert stem.macs == 8 * 8 * 8 * 3 * 3 * 3
    assert g.layer("se_scale").op is OpKind.ELEMENTWISE
    assert g.layer("stem_bn").params == 4 * 8
    assert g.layer("logits").macs == 16 * 10
    assert not g.unscored_layers


def test_nested_models_are_flattened():
    inner_in = keras.Input(batch_shape=(1, 4))
    h = keras.layers.Dense(4, name="d1")(inner_in)
    inner = keras.Model(inner_in, keras.layers.Dense(4, name="d2")(h), name="block")
    x = keras.Input(batch_shape=(1, 4), name="x")
    y = keras.layers.Dense(4, name="pre")(x)
    out = keras.layers.Add(name="add")([inner(y), y])
    g, binding = read_keras_model(keras.Model(x, out))
    assert [layer.name for layer in g] == ["x", "pre", "block/d1", "block/d2", "add"]
    assert g.layer("block/d1").inputs == ("pre",)
    assert g.layer("add").inputs == ("block/d2", "pre")
    assert set(binding.calls) == {"pre", "block/d1", "block/d2", "add"}


def test_shared_layer_calls_get_distinct_names():
    dense = keras.layers.Dense(4, name="shared")
    x = keras.Input(batch_shape=(1, 4), name="x")
    out = keras.layers.Add(name="add")([dense(x), dense(dense(x))])
    g, _ = read_keras_model(keras.Model(x, out))
    assert sorted(layer.name for layer in g if layer.source_op == "Dense") == [
        "shared", "shared@2", "shared@3"
    ]


def test_unbatched_model_is_read_at_batch_one():
    x = keras.Input((6,), name="x")
    g, _ = read_keras_model(keras.Model(x, keras.layers.Dense(3, name="d")(x)))
    assert g.layer("d").outputs[0].shape == (1, 3)


def test_dynamic_shape_names_the_layer():
    x = keras.Input((None, 3), name="seq")
    model = keras.Model(x, keras.layers.Dense(2, name="proj")(x))
    with pytest.raises(UnsupportedLayerError, match="layer 'seq' has a tensor of dynamic shape"):
        read_keras_model(model)


def test_subclassed_model_is_refused():
    class Net(keras.Model):
        def call(self, x):
            return x

    with pytest.raises(UnsupportedLayerError, match="subclassed or unbuilt"):
        read_keras_model(Net())


def test_unknown_layer_is_listed_as_unscored():
    x = keras.Input(batch_shape=(1, 4, 3), name="x")
    y = keras.layers.LayerNormalization(name="ln")(x)
    g, _ = read_keras_model(keras.Model(x, y))
    assert [(layer.name, layer.source_op) for layer in g.unscored_layers] == [
        ("ln", "LayerNormalization")
    ]


@st.composite
def random_dag_preds(draw):
    n_inputs = draw(st.integers(1, 2))
    n = draw(st.integers(n_inputs + 2, 10))
    preds = [[] for _ in range(n_inputs)]
    for i in range(n_inputs, n):
        k = draw(st.integers(1, min(3, i)))
        chosen = set(draw(st.lists(st.integers(0, i - 1), min_size=k, max_size=k)))
        if i - n_inputs < n_inputs:  # make sure every input is consumed
            chosen.add(i - n_inputs)
        preds.append(sorted(chosen))
    return preds, n_inputs


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_dag_preds())
def test_random_keras_dags_have_the_right_cuts(case):
    preds, n_inputs = case
    g, _ = read_keras_model(dag_model(preds, n_inputs))
    for cut in enumerate_cuts(g):
        assert {t.name for t in cut.crossing} == brute_force_crossing(g, cut.head_layers)
    on_every_path = brute_force_on_every_path(g)
    single = {c.after for c in enumerate_cuts(g) if c.single_tensor}
    assert single == on_every_path - {g.layers[-1].name}
    # the Keras graph's dominators among the DAG's own nodes are the DAG's dominators
    reference = dag_graph(preds, n_inputs=n_inputs)
    names = {layer.name for layer in reference}
    assert dominating_layers(g) & names == dominating_layers(reference)


def test_reading_does_not_depend_on_later_submodel_nodes():
    model = residual_se_model()
    before, _ = read_keras_model(model)
    keras.Model(model.get_layer("stem_relu").output, model.output)  # adds nodes to layers
    after, _ = read_keras_model(model)
    assert before == after


def test_binding_maps_every_ir_tensor():
    model = residual_se_model()
    g, binding = read_keras_model(model)
    assert set(binding.tensor_names.values()) == set(g.tensors)
    assert np.isfinite(model(np.zeros((1, 8, 8, 3), np.float32))).all()
