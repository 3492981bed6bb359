"""Segments of a Keras model between two cut positions, as float32 TFLite (workstation only).

Used by :mod:`hwsched.runtime.profile` to time the model piece by piece, and to write a plain
fp32 plan (:func:`write_fp32_plan`) where the full exporter (``hwsched export``, with int8,
verification and caching) is not wanted. Imports TensorFlow lazily; the runner never imports
this module.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hwsched.cuts import crossing_at
from hwsched.deployment import (
    LinkPlan,
    Plan,
    StagePlan,
    TensorSource,
    TensorSpec,
    file_sha256,
    save_plan,
)
from hwsched.errors import ProfileError
from hwsched.ir import LayerGraph, OpKind
from hwsched.load import LoadedModel


@dataclass(frozen=True)
class SegmentModel:
    """Layers ``[start, stop)`` of the topological order as a TFLite flatbuffer."""

    start: int
    stop: int
    tflite: bytes
    inputs: tuple[tuple[str, str], ...]  # (IR tensor name, signature name)
    outputs: tuple[tuple[str, str], ...]


def boundary_tensors(graph: LayerGraph, position: int) -> tuple[str, ...]:
    """Tensors alive at a boundary: model inputs at 0, model outputs at the end."""
    if position <= 0:
        return tuple(layer.outputs[0].name for layer in graph.layers if layer.op is OpKind.INPUT)
    if position >= len(graph):
        return tuple(graph.outputs)
    return tuple(t.name for t in crossing_at(graph, position))


def keras_tensors(loaded: LoadedModel) -> dict[str, Any]:
    """IR tensor name → Keras tensor of the loaded model."""
    binding = loaded.keras
    found = {binding.tensor_names[id(kt)]: kt for kt in binding.model.inputs}
    for call in binding.calls.values():
        for kt in call.node.outputs:
            name = binding.tensor_names.get(id(kt))
            if name is not None:
                found[name] = kt
    return found


def signature_name(tensor_name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", tensor_name)


def convert_keras(model: Any) -> bytes:
    """Float32 TFLite of a Keras model; the converter's chatter is kept off stdout."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    with contextlib.redirect_stdout(io.StringIO()):
        return converter.convert()


def segment_model(loaded: LoadedModel, start: int, stop: int,
                  tensors: dict[str, Any] | None = None) -> SegmentModel:
    """Convert layers ``[start, stop)``; inputs are the tensors alive at ``start``."""
    if loaded.kind != "keras":
        raise ProfileError(f"{loaded.source}: segments can only be cut from Keras models")
    import keras

    graph = loaded.graph
    tensors = tensors if tensors is not None else keras_tensors(loaded)
    in_names = boundary_tensors(graph, start)
    out_names = boundary_tensors(graph, stop)
    sub = keras.Model(inputs=[tensors[n] for n in in_names],
                      outputs={signature_name(n): tensors[n] for n in out_names})
    # Keras clones intermediate inputs; their signature names are the clones' names
    inputs = tuple((n, kt.name) for n, kt in zip(in_names, sub.inputs, strict=True))
    outputs = tuple((n, signature_name(n)) for n in out_names)
    return SegmentModel(start, stop, convert_keras(sub), inputs, outputs)


def _spec(graph: LayerGraph, name: str, signature: str,
          source: TensorSource | None = None) -> TensorSpec:
    tensor = graph.tensor(name)
    return TensorSpec(name, tensor.shape, tensor.dtype, None, source, signature)


def write_fp32_plan(loaded: LoadedModel, cut_positions: Sequence[int], directory: Path,
                    platforms: Sequence[str] | None = None, link: str = "") -> Plan:
    """Write ``DIR/plan.json`` and one fp32 ``stageK.tflite`` per stage (no verification)."""
    graph = loaded.graph
    bounds = [0, *cut_positions, len(graph)]
    directory.mkdir(parents=True, exist_ok=True)
    tensors = keras_tensors(loaded)
    produced_by: dict[str, int] = {}
    stages = []
    for index, (start, stop) in enumerate(itertools.pairwise(bounds)):
        segment = segment_model(loaded, start, stop, tensors)
        path = directory / f"stage{index}.tflite"
        path.write_bytes(segment.tflite)
        stages.append(StagePlan(
            index=index,
            platform=platforms[index] if platforms else "host",
            file=path.name,
            sha256=file_sha256(path),
            precision="fp32",
            inputs=tuple(_spec(graph, n, s, TensorSource(n, produced_by.get(n)))
                         for n, s in segment.inputs),
            outputs=tuple(_spec(graph, n, s) for n, s in segment.outputs),
            first_layer=graph.layers[start].name,
            last_layer=graph.layers[stop - 1].name,
        ))
        for name, _ in segment.outputs:
            produced_by.setdefault(name, index)
    links = tuple(
        LinkPlan(k - 1, k, link, boundary_tensors(graph, bounds[k]),
                 sum(graph.tensor(n).bytes for n in boundary_tensors(graph, bounds[k])))
        for k in range(1, len(stages))
    )
    plan = Plan(model=graph.name, stages=tuple(stages), links=links, source=loaded.source,
                cut_positions=tuple(cut_positions))
    save_plan(plan, directory)
    return plan
