"""Produce the ``.tflite`` bytes of every stage, from a Keras model or a ``.tflite`` model.

Keras path: replay each stage into its own model (:mod:`hwsched.export.keras_stages`) and
convert it (:mod:`hwsched.export.convert`). An int8 stage is calibrated on the activations
that reach it on real calibration inputs: the float outputs of the stages before it. Because
the producer was calibrated on the same values at the same tensors, its output and the
consumer's input get the same scale and zero point, and int8 bytes cross the link unchanged.

TFLite path: split the flatbuffer as it is (:mod:`hwsched.export.tflite_split`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from hwsched.errors import ExportError
from hwsched.export.cache import StageCache, arrays_fingerprint, keras_fingerprint, stage_key
from hwsched.export.convert import convert_stage
from hwsched.export.data import Sample
from hwsched.export.keras_stages import build_keras_stage
from hwsched.export.stages import StageSlice
from hwsched.ir import LayerGraph
from hwsched.progress import Progress


def keras_stage_bytes(
    binding: Any,
    graph: LayerGraph,
    slices: Sequence[StageSlice],
    precisions: Sequence[str],
    names: Mapping[str, str],
    calibration: Sequence[Sample],
    cache: StageCache,
    progress: Progress,
) -> list[bytes]:
    """Converted stages in order, from the cache where possible."""
    import tensorflow as tf

    progress("hashing the model")
    base = {
        "model": keras_fingerprint(binding.model),
        "tensorflow": tf.__version__,
        "calibration": arrays_fingerprint(calibration),
    }
    keys = [_stage_cache_key(base, s, p) for s, p in zip(slices, precisions, strict=True)]
    found: list[bytes | None] = [cache.get(key) for key in keys]
    if all(data is not None for data in found):
        return [data for data in found if data is not None]
    progress("building the stage models")
    models = [build_keras_stage(binding, graph, s, names) for s in slices]
    arrivals = _float_arrivals(models, slices, names, calibration, precisions, progress)
    result = []
    for stage, precision, key, data, model in zip(
        slices, precisions, keys, found, models, strict=True
    ):
        if data is None:
            progress(f"converting stage {stage.index} to {precision}")
            data = convert_stage(model, precision, arrivals[stage.index],
                                 label=f"stage {stage.index}")
            cache.put(key, data)
        result.append(data)
    return result


def _stage_cache_key(base: Mapping[str, str], stage: StageSlice, precision: str) -> str:
    parts = {**base, "start": stage.start, "end": stage.end, "inputs": stage.inputs,
             "outputs": stage.outputs, "precision": precision}
    if precision != "int8":
        parts.pop("calibration")  # float conversions do not depend on the calibration data
    positions = getattr(stage, "positions", None)
    if positions is not None:  # a stage-graph stage is any layer set, not a range
        parts["positions"] = list(positions)
    return stage_key(parts)


def _float_arrivals(
    models: Sequence[Any],
    slices: Sequence[StageSlice],
    names: Mapping[str, str],
    calibration: Sequence[Sample],
    precisions: Sequence[str],
    progress: Progress,
) -> dict[int, list[dict[str, np.ndarray]]]:
    """For each int8 stage: the float values that reach its inputs, per calibration sample,
    keyed by signature name (what the converter's representative dataset must yield)."""
    needed = [i for i, p in enumerate(precisions) if p == "int8"]
    arrivals: dict[int, list[dict[str, np.ndarray]]] = {i: [] for i in range(len(slices))}
    if not needed:
        return arrivals
    if not calibration:
        raise ExportError("int8 stages need calibration samples (--calibration)")
    progress(f"running {len(calibration)} calibration samples through the float stages")
    calls = [_compiled(model) for model in models[: max(needed) + 1]]
    for sample in calibration:
        values = {name: value for name, value in sample.items()}
        for index, call in enumerate(calls):
            feeds = {names[n]: values[n] for n in slices[index].inputs}
            if index in needed:
                arrivals[index].append(feeds)
            outputs = call([feeds[names[n]] for n in slices[index].inputs])
            # keep every value: a stage of a stage graph reads from any earlier stage
            values.update({n: np.asarray(outputs[names[n]]) for n in slices[index].outputs})
    return arrivals


def _compiled(model: Any) -> Callable[[list[np.ndarray]], Mapping[str, Any]]:
    import tensorflow as tf

    function = tf.function(lambda inputs: model(inputs, training=False), reduce_retracing=True)
    # feed the structure the model was built with: a list, or one tensor for a single input
    as_list = isinstance(model.input, (list, tuple))

    def call(inputs: list[np.ndarray]) -> Any:
        tensors = [tf.constant(x) for x in inputs]
        return function(tensors if as_list else tensors[0])

    return call


def keras_reference(binding: Any, graph: LayerGraph) -> Callable[[Sample], dict[str, np.ndarray]]:
    """The whole Keras model as ``{input name: array} -> {output name: float array}``."""
    model = binding.model
    call = _compiled(model)
    input_names = [t.name for layer in graph.input_layers for t in layer.outputs]

    def reference(sample: Sample) -> dict[str, np.ndarray]:
        result = call([sample[name] for name in input_names])
        values = list(result.values()) if isinstance(result, Mapping) else result
        if not isinstance(values, (list, tuple)):
            values = [values]
        return {name: np.asarray(v, dtype=np.float32)
                for name, v in zip(graph.outputs, values, strict=True)}

    return reference
