"""Build one Keras model per stage by replaying the IR layers of the stage.

Each stage gets a fresh ``keras.Input`` (batch 1, the IR shape) per input tensor, named with its
signature name; then every layer of the stage is called again with its original call arguments
(``node.arguments.fill_in`` swaps the original symbolic tensors for the new ones by ``id``).
The layer objects are shared with the source model, so the weights are the trained ones. The
outputs are a dict keyed by signature name: the TFLite converter then names the signature
outputs after those keys, and every tensor is found by name, never by position.

Limits: a layer whose call arguments hold a symbolic tensor the IR does not know (e.g. a tensor
captured by a Lambda from another model) cannot be replayed and raises ``ExportError``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hwsched.errors import ExportError
from hwsched.export.stages import StageSlice
from hwsched.ir import LayerGraph


def build_keras_stage(
    binding: Any, graph: LayerGraph, stage: StageSlice, names: Mapping[str, str]
) -> Any:
    """The Keras model of one stage; ``names`` maps IR tensor names to signature names."""
    from hwsched.load import import_keras

    keras = import_keras()
    inputs = {name: _stage_input(keras, graph, name, names[name]) for name in stage.inputs}
    values: dict[str, Any] = dict(inputs)
    for layer in stage.layers(graph):
        outputs = _replay(binding, layer.name, values)
        if len(outputs) != len(layer.outputs):
            raise ExportError(
                f"layer {layer.name!r} returned {len(outputs)} tensors on replay, "
                f"the IR has {len(layer.outputs)}"
            )
        for tensor, value in zip(layer.outputs, outputs, strict=True):
            values[tensor.name] = value
    missing = [name for name in stage.outputs if name not in values]
    if missing:
        raise ExportError(f"stage {stage.index}: outputs {missing} are not computed by the stage")
    return keras.Model(
        inputs=[inputs[name] for name in stage.inputs],
        # a pass-through output is the input tensor itself: the converter keeps it as a
        # signature output under its key without a copy op
        outputs={names[name]: values[name] for name in stage.outputs},
        name=f"{graph.name}_stage{stage.index}",
    )


def _stage_input(keras: Any, graph: LayerGraph, tensor_name: str, signature_name: str) -> Any:
    tensor = graph.tensor(tensor_name)
    return keras.Input(batch_shape=tensor.shape, dtype=tensor.dtype, name=signature_name)


def _replay(binding: Any, layer_name: str, values: Mapping[str, Any]) -> list[Any]:
    call = binding.calls[layer_name]
    replacements = {}
    for original in call.node.arguments.keras_tensors:
        tensor_name = binding.tensor_names.get(id(original))
        if tensor_name is None or tensor_name not in values:
            raise ExportError(
                f"layer {layer_name!r}: call argument {getattr(original, 'name', original)!r} "
                "is not available in this stage (not a graph tensor); cannot replay it"
            )
        replacements[id(original)] = values[tensor_name]
    args, kwargs = call.node.arguments.fill_in(replacements)
    result = call.operation(*args, **kwargs)
    return list(result) if isinstance(result, (list, tuple)) else [result]

