"""int8 tiles that share the unsplit run's quantization, so their stitched output is the
unsplit int8 run's output bit for bit.

A tile calibrated on its own crops sees a part of each activation's range and gets its own
scales: its int8 outputs then differ from the unsplit model's by rounding. Instead the unsplit
run (its layers on the whole map) is calibrated on the same samples, and before each tile is
quantized its calibrated ranges are replaced, tensor by tensor, by the unsplit run's range of
the same layer (the converter names every activation after its Keras layer; a tile's clone of
layer ``c1`` is ``c1_t<k>``); the padding and cropping a tile adds are same-scale ops and take
their input's range. Weights are quantized per channel from the same weights, biases from the
same input and weight scales, so every output position a tile computes is the same integer
computation as in the unsplit int8 run.

Limit: average pooling at a map border multiplies by a per-position factor the unsplit layer
does not have (TensorFlow divides border windows by their valid elements): those tiles are
within a step or two, not bit-exact — the plan's verification says which.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from hwsched.errors import ExportError

#: Range of one calibrated tensor: (min, max) arrays as the calibrator records them.
Range = tuple[np.ndarray, np.ndarray]
_KERAS_SUFFIX = re.compile(r"_\d+$")
_TILE_SUFFIX = re.compile(r"_t\d+$")
_OUTPUT = "<output>"


def layer_key(tensor_name: str) -> str | None:
    """The Keras layer (or signature input) a converted tensor belongs to.

    >>> layer_key("net_tile1_1/c1_t1_1/Relu;net_tile1_1/c1_t1_1/convolution")
    'c1'
    >>> layer_key("net_stage-1_1/c1_1/Relu;net_stage-1_1/c1_1/convolution")
    'c1'
    >>> layer_key("serving_default_image:0")
    'input:image'
    """
    first = tensor_name.split(";")[0]
    if first.startswith("serving_default_"):
        return "input:" + first.removeprefix("serving_default_").rsplit(":", 1)[0]
    parts = first.split("/")
    if len(parts) < 2:
        return None
    return _TILE_SUFFIX.sub("", _KERAS_SUFFIX.sub("", parts[1]))


def calibrated(keras_model: Any, representative: Sequence[Mapping[str, np.ndarray]],
               label: str) -> Any:
    """The model calibrated (float, with each activation's recorded range), as a flatbuffer
    object the ranges can be edited in."""
    import tensorflow as tf
    from tensorflow.lite.tools import flatbuffer_utils

    from hwsched.export.convert import captured_output

    converter = tf.lite.TFLiteConverter.from_keras_model(keras_model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    samples = list(representative)
    converter.representative_dataset = lambda: iter(samples)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    converter._experimental_calibrate_only = True
    with captured_output():
        try:
            data = converter.convert()
        except Exception as error:  # the converter raises many kinds
            raise ExportError(f"{label}: int8 calibration failed: "
                              f"{(str(error).strip().splitlines() or ['?'])[0]}") from None
    return flatbuffer_utils.read_model_from_bytearray(bytearray(data))


def _ranged(model: Any):
    """(index, tensor, key) of every tensor with a recorded range; the output keyed apart."""
    graph = model.subgraphs[0]
    outputs = {int(i) for i in graph.outputs}
    for index, tensor in enumerate(graph.tensors):
        q = tensor.quantization
        if q is None or q.min is None:
            continue
        key = _OUTPUT if index in outputs else layer_key(tensor.name.decode())
        yield index, tensor, key


def layer_ranges(model: Any) -> dict[str, Range]:
    """Each layer's (and input's, and the output's) calibrated range."""
    ranges: dict[str, Range] = {}
    for _, tensor, key in _ranged(model):
        if key is not None:
            ranges.setdefault(key, (tensor.quantization.min.copy(),
                                    tensor.quantization.max.copy()))
    return ranges


def impose_ranges(model: Any, ranges: Mapping[str, Range]) -> tuple[bytes, list[str]]:
    """The calibrated model with its ranges replaced by ``ranges`` where a layer matches and,
    for tensors of no matching layer (a tile's pads and crops), by their op's input's range;
    returns the flatbuffer and the keys left unmatched."""
    from tensorflow.lite.tools import flatbuffer_utils

    graph = model.subgraphs[0]
    producer = {int(out): op for op in graph.operators for out in op.outputs}
    unmatched = []
    for index, tensor, key in _ranged(model):
        q = tensor.quantization
        if key in ranges:
            q.min, q.max = ranges[key][0].copy(), ranges[key][1].copy()
            continue
        op = producer.get(index)
        source = None if op is None else graph.tensors[int(op.inputs[0])].quantization
        if source is None or source.min is None:
            unmatched.append(str(key))
            continue
        q.min, q.max = source.min.copy(), source.max.copy()
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model)), unmatched


def quantized(calibrated_bytes: bytes, label: str) -> bytes:
    """The int8 model (int8 inputs and outputs) of a calibrated flatbuffer."""
    import tensorflow as tf
    from tensorflow.lite.python import convert as tflite_convert

    from hwsched.export.convert import captured_output

    with captured_output():
        try:
            return bytes(tflite_convert.mlir_quantize(
                calibrated_bytes, fully_quantize=True, input_data_type=tf.int8,
                output_data_type=tf.int8))
        except Exception as error:
            raise ExportError(f"{label}: int8 quantization failed: "
                              f"{(str(error).strip().splitlines() or ['?'])[0]}") from None


def shared_int8(run_model: Any, run_samples: Sequence[Mapping[str, np.ndarray]],
                tiles: Sequence[tuple[Any, Sequence[Mapping[str, np.ndarray]], str]]
                ) -> tuple[bytes, list[bytes]]:
    """The unsplit run's int8 model and each tile's (``(keras model, its calibration feeds,
    label)``), every tile quantized with the run's ranges."""
    from tensorflow.lite.tools import flatbuffer_utils

    run = calibrated(run_model, run_samples, "unsplit run")
    ranges = layer_ranges(run)
    run_bytes = quantized(bytes(flatbuffer_utils.convert_object_to_bytearray(run)),
                          "unsplit run")
    result = []
    for model, samples, label in tiles:
        data, _ = impose_ranges(calibrated(model, samples, label), ranges)
        result.append(quantized(data, label))
    return run_bytes, result
