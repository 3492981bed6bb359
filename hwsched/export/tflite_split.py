"""Split a ``.tflite`` flatbuffer into stages directly, keeping its ops and quantization.

Each stage keeps the operators of its layers (the IR's ``op_index``), the tensors they touch
and the buffers those tensors use; its subgraph inputs and outputs are the boundary tensors of
the stage, and a ``serving_default`` signature names them with the same signature names the
Keras path uses. Tensors keep their dtypes and scale/zero point, so a quantized crossing tensor
has identical parameters on both sides and its raw bytes pass unchanged. No Keras is involved.

A stateful (streaming) model's resource variables stay with the stage that reads and assigns
them (the cuts never separate them): that stage gets the ``CALL_ONCE`` and the ``VAR_HANDLE``
of each of its variables ahead of its own operators, and a copy of the init subgraph pruned to
its variables' initialisers, as subgraph 1 (the ``CALL_ONCE`` index is set to it). A stage
without variables is a single-subgraph model as before.

Limits: one main subgraph and at most one init subgraph (other control flow is refused when
reading), buffers stored inside the flatbuffer (models over 2 GB that keep data outside are
refused).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from hwsched.errors import ExportError
from hwsched.export.stages import StageSlice
from hwsched.ir import LayerGraph
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
    variables = stage_variables(loaded.graph, stage)
    prelude, init = _state_prelude(model, variables) if variables else ([], None)
    operators = prelude + [subgraph.operators[i] for i in op_indices]
    tensor_map = _index_map(_used_tensors(inputs, outputs, operators))
    init_map = _index_map(_used_tensors([], [], init.operators)) if init is not None else {}
    buffer_map = _index_map(
        [0, *(int(subgraph.tensors[i].buffer) for i in tensor_map),
         *(int(init.tensors[i].buffer) for i in init_map if init is not None),
         *(int(m.buffer) for m in model.metadata or ())]
    )
    _reindex(subgraph, operators, tensor_map, buffer_map)
    subgraph.inputs = [tensor_map[i] for i in inputs]
    subgraph.outputs = [tensor_map[i] for i in outputs]
    model.subgraphs = [subgraph]
    if init is not None:
        _reindex(init, init.operators, init_map, buffer_map)
        model.subgraphs.append(init)
    model.buffers = [model.buffers[i] for i in buffer_map]
    for entry in model.metadata or ():
        entry.buffer = buffer_map[int(entry.buffer)]
    model.signatureDefs = [_signature(
        [(names[n], tensor_map[i]) for n, i in zip(stage.inputs, inputs, strict=True)],
        [(names[n], tensor_map[i]) for n, i in zip(stage.outputs, outputs, strict=True)],
    )]
    return _pack(model)


def stage_variables(graph: LayerGraph, stage: Any) -> tuple[str, ...]:
    """Shared names of the variables the stage's layers read or assign (graph order).

    A variable touched by this stage and by another cannot be split: each stage would keep a
    state of its own, and the two would drift apart from the first frame on."""
    own = {layer.name for layer in stage.layers(graph)}
    held = []
    for variable in graph.variables:
        touched = own & set(variable.accessors)
        if touched and touched != set(variable.accessors):
            elsewhere = sorted(set(variable.accessors) - own)
            raise ExportError(
                f"stage {stage.index}: holds {', '.join(sorted(touched))} of variable "
                f"{variable.name!r} but not {', '.join(elsewhere)}; a variable's reads and "
                "assigns must run in one stage"
            )
        if touched:
            held.append(variable.name)
    return tuple(held)


def resource_variables(data: bytes) -> tuple[str, ...]:
    """Shared names of the variables a stage flatbuffer opens (its main subgraph's VAR_HANDLEs),
    for firmware that must size TFLM's ``MicroResourceVariables``."""
    model = _schema().ModelT.InitFromPackedBuf(data, 0)
    codes = _op_codes(model)
    return tuple(dict.fromkeys(_text(op.builtinOptions.sharedName)
                               for op in model.subgraphs[0].operators or ()
                               if codes[op.opcodeIndex] == "VAR_HANDLE"))


def _state_prelude(model: Any, variables: Sequence[str]) -> tuple[list[Any], Any]:
    """The main subgraph's ``CALL_ONCE`` (pointed at subgraph 1) and the ``VAR_HANDLE`` of each
    of ``variables``, in their order; and the init subgraph pruned to those variables."""
    main, wanted = model.subgraphs[0], set(variables)
    codes = _op_codes(model)
    calls = [op for op in main.operators if codes[op.opcodeIndex] == "CALL_ONCE"]
    handles = [op for op in main.operators if codes[op.opcodeIndex] == "VAR_HANDLE"
               and _text(op.builtinOptions.sharedName) in wanted]
    if len(calls) != 1:
        raise ExportError(f"model has {len(calls)} CALL_ONCE operators; a stateful model is "
                          "split only with exactly one (its variables' initialiser)")
    init = model.subgraphs[int(calls[0].builtinOptions.initSubgraphIndex)]
    calls[0].builtinOptions.initSubgraphIndex = 1
    init.operators = _initialisers(init, codes, wanted)
    return [calls[0], *handles], init


def _initialisers(init: Any, codes: Sequence[str], wanted: set[str]) -> list[Any]:
    """The init subgraph's VAR_HANDLE/ASSIGN_VARIABLE ops of the ``wanted`` variables."""
    kept_handles: set[int] = set()
    kept = []
    for op in init.operators or ():
        if codes[op.opcodeIndex] == "VAR_HANDLE":
            if _text(op.builtinOptions.sharedName) in wanted:
                kept_handles.add(int(op.outputs[0]))
                kept.append(op)
        elif int(op.inputs[0]) in kept_handles:  # ASSIGN_VARIABLE of a kept handle
            kept.append(op)
    return kept


def _op_codes(model: Any) -> list[str]:
    names = {v: k for k, v in vars(_schema().BuiltinOperator).items() if not k.startswith("_")}
    return [names.get(max(int(c.builtinCode), int(c.deprecatedBuiltinCode)), "")
            for c in model.operatorCodes]


def _reindex(subgraph: Any, operators: list[Any], tensor_map: Mapping[int, int],
             buffer_map: Mapping[int, int]) -> None:
    """Keep only ``operators`` and the tensors of ``tensor_map`` in ``subgraph``, renumbered."""
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
    for role in ("inputs", "outputs"):
        old = getattr(subgraph, role)
        setattr(subgraph, role, [tensor_map[int(i)] for i in (() if old is None else old)
                                 if int(i) in tensor_map])


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value or "")


def _unpack(loaded: LoadedModel) -> Any:
    if loaded.tflite_bytes is None:
        raise ExportError(f"{loaded.source}: no flatbuffer to split")
    model = _schema().ModelT.InitFromPackedBuf(loaded.tflite_bytes, 0)
    extra = len(model.subgraphs) - 1
    if extra and not (extra == 1 and loaded.graph.stateful):
        raise ExportError(
            f"{loaded.source}: has {len(model.subgraphs)} subgraphs; only single-subgraph "
            "models (or a stateful model's main and init subgraphs) can be split at the "
            "flatbuffer level"
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
