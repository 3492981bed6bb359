"""The reference side of the proof: the source model itself, on float model inputs.

For a Keras model that is the Keras model; for a ``.tflite`` model the unsplit flatbuffer run
by LiteRT through its subgraph tensor indices (no signature needed), with int8 inputs quantized
and int8 outputs dequantized by the model's own parameters.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from hwsched.deployment import Quantization
from hwsched.handoff import dequantize, quantize
from hwsched.litert import open_interpreter
from hwsched.load import LoadedModel

Reference = Callable[[Mapping[str, np.ndarray]], dict[str, np.ndarray]]


def reference_for(loaded: LoadedModel) -> tuple[Reference, str, bool]:
    """``(reference, label, exact)``: ``exact`` when any faithful split must match it within
    the fp32 tolerance whatever the stages' precision (a flatbuffer split keeps every op)."""
    if loaded.kind == "tflite":
        return tflite_reference(loaded), f"tflite:{loaded.source}", True
    from hwsched.export.build import keras_reference

    return keras_reference(loaded.keras, loaded.graph), f"keras:{loaded.source}", False


def tflite_reference(loaded: LoadedModel) -> Reference:
    assert loaded.tflite_bytes is not None
    interpreter = open_interpreter(content=loaded.tflite_bytes, threads=1, delegates=False)
    graph = loaded.graph
    inputs = {layer.outputs[0].name: int(layer.attrs["output_indices"][0])
              for layer in graph.input_layers}
    outputs = {name: _tensor_index(loaded, name) for name in graph.outputs}

    def reference(sample: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        for name, index in inputs.items():
            tensor = graph.tensor(name)
            value = sample[name]
            if tensor.quantization is not None:
                value = quantize(value, Quantization(*tensor.quantization), tensor.dtype)
            interpreter.set_tensor(index, np.asarray(value).astype(tensor.dtype))
        interpreter.invoke()
        result = {}
        for name, index in outputs.items():
            tensor = graph.tensor(name)
            raw = np.array(interpreter.get_tensor(index))
            if tensor.quantization is not None:
                raw = dequantize(raw, Quantization(*tensor.quantization))
            result[name] = raw.astype(np.float32)
        return result

    return reference


def _tensor_index(loaded: LoadedModel, tensor_name: str) -> int:
    """Flatbuffer index of an IR tensor (``layer`` or ``layer:i`` of a multi-output op)."""
    tensor = loaded.graph.tensor(tensor_name)
    layer = loaded.graph.layer(tensor.producer)
    position = [t.name for t in layer.outputs].index(tensor_name)
    return int(layer.attrs["output_indices"][position])
