"""Split a ``.tflite`` flatbuffer into stages directly, keeping its ops and quantization.

Each stage keeps the operators of its layers (the IR's ``op_index``), the tensors they touch
and the buffers those tensors use; its subgraph inputs and outputs are the boundary tensors of
the stage, and a ``serving_default`` signature names them with the same signature names the
Keras path uses. Tensors keep their dtypes and scale/zero point, so a quantized crossing tensor
has identical parameters on both sides and its raw bytes pass unchanged. No Keras is involved.

Limits: one subgraph (control flow is refused when reading), buffers stored inside the
flatbuffer (models over 2 GB that keep data outside are refused).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from hwsched.errors import ExportError
from hwsched.export.stages import StageSlice
from hwsched.load import LoadedModel

#: TensorType values by precision, to tell what a flatbuffer computes in.
_INTEGER_TYPES = {3, 7, 9}  # uint8, int16, int8
_FLOAT16 = 1
_FILE_IDENTIFIER = b"TFL3"


def _schema() -> Any:
    from ai_edge_litert import schema_py_generated

    return schema_py_generated


def model_precision(loaded: LoadedModel) -> str:
    """int8 when activations are integer, fp16 when weights are float16, else fp32."""
    model = _unpack(loaded)
    types = {int(t.type) for t in model.subgraphs[0].tensors}
    edge_types = {loaded.graph.tensor(name).dtype for name in loaded.graph.tensors}
    if edge_types & {"int8", "uint8", "int16"} or (types & _INTEGER_TYPES and "float32" not in
                                                   edge_types):
        return "int8"
    return "fp16" if _FLOAT16 in types else "fp32"


def split_tflite(loaded: LoadedModel, stage: StageSlice, names: Mapping[str, str]) -> bytes:
    """The flatbuffer of one stage of a ``.tflite`` model."""
    model = _unpack(loaded)
    subgraph = model.subgraphs[0]
    op_indices = [int(layer.attrs["op_index"]) for layer in stage.layers(loaded.graph)]
    inputs = [_flatbuffer_index(loaded, name) for name in stage.inputs]
    outputs = [_flatbuffer_index(loaded, name) for name in stage.outputs]
    operators = [subgraph.operators[i] for i in op_indices]
    tensor_map = _index_map(_used_tensors(inputs, outputs, operators))
    buffer_map = _index_map(
        [0, *(int(subgraph.tensors[i].buffer) for i in tensor_map),
         *(int(m.buffer) for m in model.metadata or ())]
    )
    for op in operators:
        op.inputs = [tensor_map[int(i)] if int(i) >= 0 else -1 for i in op.inputs]
        op.outputs = [tensor_map[int(i)] for i in op.outputs]
        if op.intermediates is not None:
            op.intermediates = [tensor_map[int(i)] for i in op.intermediates]
    tensors = [subgraph.tensors[i] for i in tensor_map]
    for tensor in tensors:
        tensor.buffer = buffer_map[int(tensor.buffer)]
    subgraph.tensors = tensors
    subgraph.operators = operators
    subgraph.inputs = [tensor_map[i] for i in inputs]
    subgraph.outputs = [tensor_map[i] for i in outputs]
    model.buffers = [model.buffers[i] for i in buffer_map]
    for entry in model.metadata or ():
        entry.buffer = buffer_map[int(entry.buffer)]
    model.signatureDefs = [_signature(
        [(names[n], tensor_map[i]) for n, i in zip(stage.inputs, inputs, strict=True)],
        [(names[n], tensor_map[i]) for n, i in zip(stage.outputs, outputs, strict=True)],
    )]
    return _pack(model)


def _unpack(loaded: LoadedModel) -> Any:
    if loaded.tflite_bytes is None:
        raise ExportError(f"{loaded.source}: no flatbuffer to split")
    model = _schema().ModelT.InitFromPackedBuf(loaded.tflite_bytes, 0)
    if len(model.subgraphs) != 1:
        raise ExportError(
            f"{loaded.source}: has {len(model.subgraphs)} subgraphs; only single-subgraph "
            "models can be split at the flatbuffer level"
        )
    if any(int(getattr(b, "offset", 0) or 0) > 1 for b in model.buffers or ()):
        raise ExportError(f"{loaded.source}: buffers stored outside the flatbuffer (>2 GB "
                          "models) cannot be split")
    return model


def _flatbuffer_index(loaded: LoadedModel, tensor_name: str) -> int:
    tensor = loaded.graph.tensor(tensor_name)
    layer = loaded.graph.layer(tensor.producer)
    position = [t.name for t in layer.outputs].index(tensor_name)
    return int(layer.attrs["output_indices"][position])


def _used_tensors(inputs: list[int], outputs: list[int], operators: list[Any]) -> list[int]:
    used = [*inputs, *outputs]
    for op in operators:
        used += [int(i) for i in op.inputs if int(i) >= 0]
        used += [int(i) for i in op.outputs]
        used += [int(i) for i in op.intermediates or ()]
    return used


def _index_map(indices: Iterable[int]) -> dict[int, int]:
    """Old index -> new index, in order of first appearance (stable, no repeats)."""
    result: dict[int, int] = {}
    for index in indices:
        result.setdefault(index, len(result))
    return result


def _signature(inputs: list[tuple[str, int]], outputs: list[tuple[str, int]]) -> Any:
    schema = _schema()
    signature = schema.SignatureDefT()
    signature.signatureKey = "serving_default"
    signature.subgraphIndex = 0
    signature.inputs = [_tensor_map(schema, name, index) for name, index in inputs]
    signature.outputs = [_tensor_map(schema, name, index) for name, index in outputs]
    return signature


def _tensor_map(schema: Any, name: str, index: int) -> Any:
    entry = schema.TensorMapT()
    entry.name = name
    entry.tensorIndex = index
    return entry


def _pack(model: Any) -> bytes:
    import flatbuffers

    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=_FILE_IDENTIFIER)
    return bytes(builder.Output())
