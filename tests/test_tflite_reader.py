import re
from itertools import groupby
from pathlib import Path

import numpy as np
import pytest
from kerasmodels import inception_model, residual_se_model, to_tflite

from hwsched.cuts import dominating_layers, enumerate_cuts
from hwsched.errors import ModelLoadError
from hwsched.ir import OpKind
from hwsched.load import load_model
from hwsched.load.keras_reader import read_keras_model
from hwsched.load.tflite_reader import read_tflite_bytes

#: Op kinds the TFLite converter folds into a neighbouring op (padding into a conv, BN into a
#: conv's weights, an activation into the op before it).
FUSABLE = {OpKind.PAD, OpKind.BATCH_NORM, OpKind.ACTIVATION, OpKind.IDENTITY}


def single_tensor_runs(graph):
    """(shape, producing layer) of consecutive single-tensor cuts, one per run of equal shape."""
    cuts = [c for c in enumerate_cuts(graph) if c.single_tensor]
    return [
        [graph.layer(c.after) for c in run]
        for _shape, run in groupby(cuts, key=lambda c: c.crossing[0].shape)
    ]


@pytest.fixture(scope="module")
def res_se_pair(tmp_path_factory):
    model = residual_se_model()
    path = tmp_path_factory.mktemp("tfl") / "res_se.tflite"
    path.write_bytes(to_tflite(model))
    return read_keras_model(model)[0], load_model(str(path)).graph


def test_tflite_graph_has_weights_off_the_edges(res_se_pair):
    _, g = res_se_pair
    convs = [layer for layer in g if layer.op is OpKind.CONV2D]
    assert convs
    for layer in convs:
        assert len(layer.inputs) == 1  # filter and bias are constants, not edges
        assert layer.params > 0 and layer.macs > 0
    assert g.input_layers[0].outputs[0].shape == (1, 8, 8, 3)
    assert not g.unscored_layers


def test_keras_and_tflite_agree_modulo_fusion(res_se_pair):
    keras_graph, tflite_graph = res_se_pair
    k_runs, t_runs = single_tensor_runs(keras_graph), single_tensor_runs(tflite_graph)
    k_shapes = [run[0].outputs[0].shape for run in k_runs]
    t_shapes = [run[0].outputs[0].shape for run in t_runs]
    # every TFLite single-tensor cut has a Keras counterpart, in the same order …
    it = iter(k_shapes)
    assert all(shape in it for shape in t_shapes)
    # … and Keras cuts without one are produced only by layers the converter fuses away
    missing = [run for run in k_runs if run[0].outputs[0].shape not in t_shapes]
    for run in missing:
        assert {layer.op for layer in run} <= FUSABLE, [layer.name for layer in run]


def test_keras_and_tflite_macs_agree(res_se_pair):
    keras_graph, tflite_graph = res_se_pair
    conv_macs = lambda g: sum(  # noqa: E731
        layer.macs for layer in g if layer.op in (OpKind.CONV2D, OpKind.DENSE)
    )
    assert conv_macs(keras_graph) == conv_macs(tflite_graph)


def test_inception_block_is_cut_consistently(tmp_path):
    model = inception_model()
    path = tmp_path / "inception.tflite"
    path.write_bytes(to_tflite(model))
    g = load_model(str(path)).graph
    assert len(dominating_layers(g)) == 3  # input, concat, output conv
    widest = max(enumerate_cuts(g), key=lambda c: len(c.crossing))
    assert len(widest.crossing) == 3


def test_corrupt_and_missing_files_name_the_file(tmp_path):
    data = to_tflite(inception_model())
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(data[: len(data) // 3])
    with pytest.raises(ModelLoadError, match="bad.tflite: corrupt TFLite flatbuffer"):
        load_model(str(bad))
    empty = tmp_path / "empty.tflite"
    empty.write_bytes(b"\x00" * 4 + b"TFL3" + b"\xff" * 40)
    with pytest.raises(ModelLoadError, match="empty.tflite: "):
        load_model(str(empty))
    with pytest.raises(ModelLoadError, match="not a TFLite flatbuffer"):
        read_tflite_bytes(b"hello world!", name="x", source="x.tflite")
    with pytest.raises(ModelLoadError, match="missing.tflite: no such file"):
        load_model(str(tmp_path / "missing.tflite"))


def test_quantized_model_keeps_its_quantization(tmp_path):
    import tensorflow as tf

    model = residual_se_model()
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    rng = np.random.default_rng(0)
    converter.representative_dataset = lambda: (
        [rng.random((1, 8, 8, 3), dtype=np.float32)] for _ in range(8)
    )
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    path = tmp_path / "q.tflite"
    path.write_bytes(converter.convert())
    g = load_model(str(path)).graph
    x = g.input_layers[0].outputs[0]
    assert x.dtype == "int8" and x.quantization is not None
    conv = next(layer for layer in g if layer.op is OpKind.CONV2D)
    assert conv.outputs[0].dtype == "int8"
    assert conv.weight_bytes < 4 * conv.params  # int8 weights


# -- issue 15: a damaged flatbuffer is refused when read, naming what is wrong ------------------
TAIL = Path(__file__).parent / "data" / "digits_tail_fp16.tflite"


def repacked(edit) -> bytes:
    """The seed model, unpacked with LiteRT's schema, edited, and packed again."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(TAIL.read_bytes(), 0)
    edit(model)
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _set_op_input(model):
    op = model.subgraphs[0].operators[0]
    op.inputs = [999, *list(op.inputs)[1:]]


def _set_buffer(model):
    model.subgraphs[0].tensors[0].buffer = 10_000


def _set_opcode(model):
    model.subgraphs[0].operators[-1].opcodeIndex = 77


def _set_signature_tensor(model):
    model.signatureDefs[0].inputs[0].tensorIndex = 500


def _set_name(model):
    model.subgraphs[0].tensors[0].name = b"\xff\xfe"


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (_set_op_input, "subgraph 0 operator 0 input index 999 is out of range"),
        (_set_buffer, "subgraph 0 tensor 0 buffer index 10000 is out of range"),
        (_set_opcode, "opcode index 77 is out of range"),
        (_set_signature_tensor, "signature 0 tensor 'head_pool' index 500 is out of range"),
        (_set_name, "subgraph 0 tensor 0 name is not UTF-8 text"),
    ],
)
def test_damaged_indices_and_names_are_refused_when_read(edit, message):
    with pytest.raises(ModelLoadError, match=re.escape(message)):
        read_tflite_bytes(repacked(edit), "tail")


def test_the_undamaged_repack_reads():
    assert len(read_tflite_bytes(repacked(lambda model: None), "tail")) == 5


def test_a_grouped_convolution_reads_with_its_groups_and_is_not_split_by_channels(tmp_path):
    """TFLite writes a grouped convolution as CONV_2D whose filters see a slice of the input's
    channels: read back with ``groups`` (the Keras layer's own, the oracle), so it is not
    offered as an output-channel split (each part would need another slice of the input)."""
    import keras

    from hwsched.tiles.receptive import can_split_channels

    image = keras.Input(batch_shape=(1, 8, 8, 8), name="image")
    x = keras.layers.Conv2D(8, 3, padding="same", groups=4, name="grouped")(image)
    x = keras.layers.Conv2D(4, 3, padding="same", name="plain")(x)
    path = tmp_path / "grouped.tflite"
    path.write_bytes(to_tflite(keras.Model(image, x)))
    convs = [layer for layer in load_model(str(path)).graph if layer.op is OpKind.CONV2D]
    assert sorted(layer.attrs["groups"] for layer in convs) == [1, 4]
    assert sorted(can_split_channels(layer) for layer in convs) == [False, True]
