import pytest
from irgraphs import brute_force_crossing

from hwsched.cuts import dominating_layers, enumerate_cuts
from hwsched.errors import ModelLoadError, UnknownNameError
from hwsched.load import load_model
from hwsched.load.zoo import ZOO

#: Facts about the zoo's graphs (counted by hand from the Keras architectures, batch 1).
EXPECTED = {
    # name: (layers, params)
    "efficientnet_b0": (240, 5_330_571),
    "mobilenet_v2": (156, 3_538_984),
    "resnet50": (177, 25_636_712),
    "vgg16": (23, 138_357_544),
}


@pytest.mark.parametrize("name", [n for n in ZOO if n != "digits_cnn"])
def test_zoo_single_tensor_cuts_are_the_dominators(name):
    g = load_model(name).graph
    cuts = enumerate_cuts(g)
    assert len(cuts) == len(g) - 1
    single = {c.after for c in cuts if c.single_tensor}
    assert single == dominating_layers(g) - {g.layers[-1].name}
    assert not g.unscored_layers
    assert g.input_layers[0].outputs[0].shape[0] == 1  # built at batch 1
    for cut in cuts[:: max(1, len(cuts) // 25)]:  # a spread of positions against the definition
        assert {t.name for t in cut.crossing} == brute_force_crossing(g, cut.head_layers)
    if name in EXPECTED:
        assert (len(g), g.total_params) == EXPECTED[name]


def test_efficientnet_cut_counts_and_work():
    g = load_model("efficientnet_b0").graph
    cuts = enumerate_cuts(g)
    assert sum(c.single_tensor for c in cuts) == 85  # 84 inside the network + after the input
    assert max(len(c.crossing) for c in cuts) == 3  # inside a squeeze-excite branch
    assert 380e6 < g.total_macs < 410e6  # the published 0.39 GMACs


def test_digits_model_ships_and_loads():
    g = load_model("digits_cnn").graph
    assert g.total_params == 10_238
    assert g.input_layers[0].outputs[0].shape == (1, 8, 8, 1)


def test_unknown_names_and_files():
    with pytest.raises(UnknownNameError, match="unknown model 'resnet9000'; valid: .*vgg16"):
        load_model("resnet9000")
    with pytest.raises(ModelLoadError, match="nowhere.keras: no such file"):
        load_model("nowhere.keras")
    with pytest.raises(ModelLoadError, match="nowhere.onnx: no such file"):
        load_model("nowhere.onnx")


def test_unsupported_file_type(tmp_path):
    path = tmp_path / "model.onnx"
    path.write_bytes(b"onnx")
    with pytest.raises(ModelLoadError, match=r"model.onnx: unsupported model file type '\.onnx'"):
        load_model(str(path))


def test_corrupt_keras_file_and_weights(tmp_path):
    bad = tmp_path / "bad.keras"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ModelLoadError, match="bad.keras: not a .keras archive"):
        load_model(str(bad))
    weights = tmp_path / "w.weights.h5"
    weights.write_bytes(b"junk")
    with pytest.raises(ModelLoadError, match="w.weights.h5: cannot load weights"):
        load_model("digits_cnn", weights=str(weights))


def test_weights_are_loaded_into_zoo_models(tmp_path):
    import numpy as np

    model = load_model("digits_cnn").keras.model
    x = np.ones((1, 8, 8, 1), np.float32)
    shipped = np.asarray(model(x))
    model.set_weights([w * 0.5 for w in model.get_weights()])
    path = tmp_path / "digits.weights.h5"
    model.save_weights(path)
    again = np.asarray(load_model("digits_cnn", weights=str(path)).keras.model(x))
    assert np.allclose(again, np.asarray(model(x)))
    assert not np.allclose(again, shipped)
