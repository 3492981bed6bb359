"""Read a ``.tflite`` flatbuffer into the IR, with LiteRT's schema alone (no TensorFlow).

Operators become layers in their stored execution order (a topological order); the subgraph's
inputs become ``input`` layers placed first. Constant tensors (weights, biases, folded
constants) are not edges: each counts once into the params of its first consumer. Layer names
come from the first output tensor's name (up to the first ``;`` of a fused name), made unique.
A layer's ``attrs`` keep ``op_index`` and ``output_indices`` so that export can split the
flatbuffer at the same places.

Stateful (streaming) models keep state in resource variables: a ``CALL_ONCE`` runs an init
subgraph of ``VAR_HANDLE`` + ``ASSIGN_VARIABLE`` pairs on the first call, and the main subgraph
reaches each variable through a ``VAR_HANDLE`` (by ``shared_name``) with ``READ_VARIABLE`` and
``ASSIGN_VARIABLE``. The reads and assigns become layers (zero-work ``identity`` layers whose
``attrs["variable"]`` names the variable; the resource handle is not an edge); ``CALL_ONCE``
and ``VAR_HANDLE`` are not layers, export puts them back into every stage that holds a
variable. The graph's ``variables`` say who touches each one, and the layers are reordered
(:func:`tighten_variable_accesses`) so that each variable's accesses lie close together: the
converter puts every read at the top, which would leave no cut between two ring buffers. Other
control flow (``WHILE``, ``IF``, ``CALL``) and init subgraphs that compute anything else are
refused.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from hwsched.errors import ModelLoadError, UnsupportedLayerError
from hwsched.flops import op_work
from hwsched.ir import Layer, LayerGraph, OpKind, Tensor, Variable

#: TFLite builtin operator name -> IR op kind.
TFLITE_OP_KINDS: Mapping[str, OpKind] = MappingProxyType(
    {
        "CONV_2D": OpKind.CONV2D,
        "CONV_3D": OpKind.CONV2D,
        "DEPTHWISE_CONV_2D": OpKind.DEPTHWISE_CONV2D,
        "TRANSPOSE_CONV": OpKind.CONV2D_TRANSPOSE,
        "FULLY_CONNECTED": OpKind.DENSE,
        "BATCH_MATMUL": OpKind.MATMUL,
        "MAX_POOL_2D": OpKind.MAX_POOL,
        "AVERAGE_POOL_2D": OpKind.AVG_POOL,
        "MEAN": OpKind.GLOBAL_POOL,
        "SUM": OpKind.REDUCE,
        "REDUCE_MAX": OpKind.REDUCE,
        "REDUCE_MIN": OpKind.REDUCE,
        "REDUCE_PROD": OpKind.REDUCE,
        "ADD": OpKind.ELEMENTWISE,
        "SUB": OpKind.ELEMENTWISE,
        "MUL": OpKind.ELEMENTWISE,
        "DIV": OpKind.ELEMENTWISE,
        "MAXIMUM": OpKind.ELEMENTWISE,
        "MINIMUM": OpKind.ELEMENTWISE,
        "SQUARED_DIFFERENCE": OpKind.ELEMENTWISE,
        "ADD_N": OpKind.ELEMENTWISE,
        "RELU": OpKind.ACTIVATION,
        "RELU6": OpKind.ACTIVATION,
        "RELU_N1_TO_1": OpKind.ACTIVATION,
        "RELU_0_TO_1": OpKind.ACTIVATION,
        "LEAKY_RELU": OpKind.ACTIVATION,
        "PRELU": OpKind.ACTIVATION,
        "ELU": OpKind.ACTIVATION,
        "LOGISTIC": OpKind.ACTIVATION,
        "TANH": OpKind.ACTIVATION,
        "HARD_SWISH": OpKind.ACTIVATION,
        "GELU": OpKind.ACTIVATION,
        "EXP": OpKind.ACTIVATION,
        "SOFTMAX": OpKind.SOFTMAX,
        "LOG_SOFTMAX": OpKind.SOFTMAX,
        "CONCATENATION": OpKind.CONCAT,
        "RESHAPE": OpKind.RESHAPE,
        "SQUEEZE": OpKind.RESHAPE,
        "EXPAND_DIMS": OpKind.RESHAPE,
        "TRANSPOSE": OpKind.RESHAPE,
        "STRIDED_SLICE": OpKind.RESHAPE,
        "SLICE": OpKind.RESHAPE,
        "GATHER": OpKind.RESHAPE,
        "PACK": OpKind.RESHAPE,
        "UNPACK": OpKind.RESHAPE,
        "SPLIT": OpKind.RESHAPE,
        "SPLIT_V": OpKind.RESHAPE,
        "PAD": OpKind.PAD,
        "PADV2": OpKind.PAD,
        "MIRROR_PAD": OpKind.PAD,
        "RESIZE_BILINEAR": OpKind.RESIZE,
        "RESIZE_NEAREST_NEIGHBOR": OpKind.RESIZE,
        "QUANTIZE": OpKind.QUANTIZE,
        "DEQUANTIZE": OpKind.QUANTIZE,
        "CAST": OpKind.QUANTIZE,
        "READ_VARIABLE": OpKind.IDENTITY,
        "ASSIGN_VARIABLE": OpKind.IDENTITY,
    }
)

#: A flatbuffer addresses at most 2 GiB (larger models keep buffers outside it).
MAX_FLATBUFFER_BYTES = 2**31

#: Ops whose control flow hwsched cannot cut through.
CONTROL_FLOW_OPS = frozenset({"WHILE", "IF", "CALL"})
#: Ops an init subgraph (called by ``CALL_ONCE``) may hold for hwsched to copy it per stage.
INIT_SUBGRAPH_OPS = frozenset({"VAR_HANDLE", "ASSIGN_VARIABLE"})

#: TensorType enum value -> IR dtype.
_DTYPES: Mapping[int, str] = MappingProxyType(
    {0: "float32", 1: "float16", 2: "int32", 3: "uint8", 4: "int64", 6: "bool", 7: "int16",
     9: "int8", 10: "float64", 18: "bfloat16"}
)
#: ActivationFunctionType enum value -> activation name (fused activations of TFLite ops).
#: ``tflite.Padding.SAME`` (``VALID`` is 1).
_TFLITE_PADDING_SAME = 0
_FUSED_ACTIVATIONS: Mapping[int, str] = MappingProxyType(
    {0: "", 1: "relu", 2: "relu", 3: "relu6", 4: "tanh"}
)


def _schema() -> Any:
    try:
        from ai_edge_litert import schema_py_generated
    except ImportError:
        raise ModelLoadError(
            "reading .tflite files needs LiteRT's schema: pip install ai-edge-litert"
        ) from None
    return schema_py_generated


def read_tflite_file(path: Path) -> tuple[LayerGraph, bytes]:
    """Read a ``.tflite`` file into ``(graph, flatbuffer bytes)``."""
    from hwsched.load import _require_file

    _require_file(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ModelLoadError(f"{path}: cannot read ({error.strerror})") from None
    return read_tflite_bytes(data, name=path.stem, source=str(path)), data


def read_tflite_bytes(data: bytes, name: str, source: str = "") -> LayerGraph:
    schema = _schema()
    label = source or name
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise ModelLoadError(f"{label}: not a TFLite flatbuffer (missing 'TFL3' identifier)")
    if len(data) > MAX_FLATBUFFER_BYTES:
        raise ModelLoadError(f"{label}: {len(data):,} bytes; flatbuffers end at 2 GiB")
    try:
        model = schema.ModelT.InitFromPackedBuf(data, 0)
        verify_model(model, len(data), label)
        graph = _Reader(schema, model, name, source).read()
    except (IndexError, ValueError, TypeError, AttributeError, KeyError, OverflowError,
            RecursionError, struct.error) as error:
        # a truncated or damaged buffer fails somewhere inside the flatbuffer accessors
        raise ModelLoadError(
            f"{label}: corrupt TFLite flatbuffer ({type(error).__name__}: "
            f"{str(error)[:100]})"
        ) from None
    from hwsched.litert import check_loadable

    check_loadable(data, label, ModelLoadError)
    return graph


def verify_model(model: Any, size_bytes: int, label: str) -> None:
    """Check once, when a file is read, everything later steps index or decode without
    checking: every tensor, operator-code, buffer and subgraph index is in range, external
    buffers lie inside the file, and every name is UTF-8. Export splits, re-packs and hands
    these models to LiteRT; a damaged index would surface there as an IndexError or
    UnicodeDecodeError far from the file that caused it."""
    check = _Checker(label)
    subgraphs = model.subgraphs or []
    buffers = len(model.buffers or [])
    for k, buffer in enumerate(model.buffers or []):
        offset, size = int(getattr(buffer, "offset", 0) or 0), int(getattr(buffer, "size", 0) or 0)
        if offset > 1 and offset + size > size_bytes:
            raise check.fail(f"buffer {k} lies outside the file ({offset}+{size} bytes)")
    for k, entry in enumerate(model.metadata or []):
        check.index(entry.buffer, buffers, f"metadata {k} buffer")
        check.text(entry.name, f"metadata {k} name")
    for k, code in enumerate(model.operatorCodes or []):
        check.text(code.customCode, f"operator code {k} custom name")
    for s_index, subgraph in enumerate(subgraphs):
        _verify_subgraph(check, subgraph, s_index, buffers, len(model.operatorCodes or []))
    for k, signature in enumerate(model.signatureDefs or []):
        where = f"signature {k}"
        check.text(signature.signatureKey, f"{where} key")
        check.index(signature.subgraphIndex, len(subgraphs), f"{where} subgraph")
        tensors = len(subgraphs[int(signature.subgraphIndex)].tensors or [])
        for entry in [*(signature.inputs or []), *(signature.outputs or [])]:
            check.text(entry.name, f"{where} tensor name")
            check.index(entry.tensorIndex, tensors, f"{where} tensor {_text(entry.name)!r}")


def _verify_subgraph(check: _Checker, subgraph: Any, s_index: int, buffers: int,
                     codes: int) -> None:
    where = f"subgraph {s_index}"
    check.text(subgraph.name, f"{where} name")
    tensors = subgraph.tensors or []
    for t_index, tensor in enumerate(tensors):
        check.index(tensor.buffer, buffers, f"{where} tensor {t_index} buffer")
        check.text(tensor.name, f"{where} tensor {t_index} name")
    for role in ("inputs", "outputs"):
        for i in getattr(subgraph, role) if getattr(subgraph, role) is not None else []:
            check.index(i, len(tensors), f"{where} {role[:-1]}")
    for o_index, op in enumerate(subgraph.operators or []):
        check.index(op.opcodeIndex, codes, f"{where} operator {o_index} opcode")
        for role in ("inputs", "outputs", "intermediates"):
            for i in getattr(op, role) if getattr(op, role) is not None else []:
                if not (role == "inputs" and int(i) == -1):  # -1: optional input left out
                    check.index(i, len(tensors), f"{where} operator {o_index} {role[:-1]}")


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


class _Checker:
    """Failures of :func:`verify_model`, each one line naming the file and the bad entry."""

    def __init__(self, label: str) -> None:
        self.label = label

    def fail(self, problem: str) -> ModelLoadError:
        return ModelLoadError(f"{self.label}: corrupt TFLite flatbuffer: {problem}")

    def index(self, value: Any, count: int, what: str) -> None:
        if not 0 <= int(value) < count:
            raise self.fail(f"{what} index {int(value)} is out of range (0..{count - 1})")

    def text(self, value: Any, what: str) -> None:
        if isinstance(value, bytes):
            try:
                value.decode("utf-8")
            except UnicodeDecodeError:
                raise self.fail(f"{what} is not UTF-8 text") from None


class _Reader:
    def __init__(self, schema: Any, model: Any, name: str, source: str) -> None:
        self.schema = schema
        self.model = model
        self.name = name
        self.source = source
        self.label = source or name
        if not model.subgraphs:
            raise ModelLoadError(f"{self.label}: TFLite model has no subgraph")
        self.subgraph = model.subgraphs[0]
        self.op_names = {
            value: key for key, value in vars(schema.BuiltinOperator).items()
            if not key.startswith("_")
        }
        self.tensor_names: dict[int, str] = {}  # flatbuffer tensor index -> IR tensor name
        self.layer_names: set[str] = set()
        self.counted_constants: set[int] = set()
        #: resource tensor index -> the shared name of the variable its VAR_HANDLE opens
        self.handles: dict[int, str] = {}
        #: shared name -> (flatbuffer index of a value tensor, readers, writers), first seen first
        self.accesses: dict[str, tuple[int, list[str], list[str]]] = {}

    def read(self) -> LayerGraph:
        layers = [self._input_layer(int(i)) for i in self.subgraph.inputs]
        for index, op in enumerate(self.subgraph.operators or []):
            layer = self._op_layer(index, op)
            if layer is not None:
                layers.append(layer)
        if self.accesses:
            layers = tighten_variable_accesses(layers)
        outputs = []
        for i in self.subgraph.outputs:
            if int(i) not in self.tensor_names:
                raise ModelLoadError(f"{self.label}: output tensor {int(i)} is never produced")
            outputs.append(self.tensor_names[int(i)])
        return LayerGraph(self.name, tuple(layers), tuple(outputs), source=self.source,
                          variables=self._variables())

    def _state_op(self, op_index: int, op: Any, source_op: str) -> bool:
        """Record a ``CALL_ONCE`` or ``VAR_HANDLE`` (not layers); True when ``op`` was one."""
        if source_op == "CALL_ONCE":
            self._check_init_subgraph(op_index, int(op.builtinOptions.initSubgraphIndex))
            return True
        if source_op == "VAR_HANDLE":
            shared = _text(op.builtinOptions.sharedName) or f"variable_{op_index}"
            self.handles[int(op.outputs[0])] = shared
            return True
        return False

    def _check_init_subgraph(self, op_index: int, init: int) -> None:
        if not 0 < init < len(self.model.subgraphs):
            raise ModelLoadError(
                f"{self.label}: corrupt TFLite flatbuffer: operator {op_index} (CALL_ONCE) names "
                f"init subgraph {init}, which does not exist (0..{len(self.model.subgraphs) - 1})"
            )
        for k, init_op in enumerate(self.model.subgraphs[init].operators or []):
            name = self._op_name(init_op)
            if name not in INIT_SUBGRAPH_OPS:
                raise UnsupportedLayerError(
                    f"{self.label}: init subgraph {init} (called once by operator {op_index}) "
                    f"holds operator {k}, a {name}; hwsched copies only variable initialisers "
                    "(VAR_HANDLE and ASSIGN_VARIABLE) into the stages"
                )

    def _note_access(self, layer_name: str, op: Any, source_op: str) -> int:
        """Record a READ_VARIABLE/ASSIGN_VARIABLE of a variable; its state bytes when this is
        the variable's first access (they are counted once, into this layer)."""
        handle = int(op.inputs[0])
        if handle not in self.handles:
            raise UnsupportedLayerError(
                f"{self.label}: {source_op} of layer {layer_name!r} reads a resource tensor "
                f"{self._raw_name(handle)!r} that no VAR_HANDLE opens"
            )
        shared = self.handles[handle]
        value = int(op.outputs[0]) if source_op == "READ_VARIABLE" else int(op.inputs[1])
        first = shared not in self.accesses
        entry = self.accesses.setdefault(shared, (value, [], []))
        entry[1 if source_op == "READ_VARIABLE" else 2].append(layer_name)
        return self._variable(shared).bytes if first else 0

    def _variable(self, shared: str) -> Variable:
        value, readers, writers = self.accesses[shared]
        raw = self.subgraph.tensors[value]
        dtype = _DTYPES.get(int(raw.type))
        shape = tuple(int(d) for d in raw.shape) if raw.shape is not None else ()
        if dtype is None or any(d < 0 for d in shape):
            raise UnsupportedLayerError(
                f"{self.label}: variable {shared!r} holds {shape} of TFLite type {raw.type}, "
                "which hwsched cannot represent"
            )
        return Variable(shared, shape, dtype, tuple(readers), tuple(writers),
                        quantization=_quantization(raw))

    def _variables(self) -> tuple[Variable, ...]:
        return tuple(self._variable(shared) for shared in self.accesses)

    def _input_layer(self, index: int) -> Layer:
        name = self._unique(self._raw_name(index))
        tensor = self._tensor(index, name, name)
        return Layer(name, OpKind.INPUT, (), (tensor,), source_op="INPUT",
                     attrs={"output_indices": (index,)})

    def _op_layer(self, op_index: int, op: Any) -> Layer | None:
        source_op = self._op_name(op)
        if source_op in CONTROL_FLOW_OPS:
            raise UnsupportedLayerError(
                f"{self.label}: operator {op_index} is {source_op}; hwsched cannot cut through "
                "control flow"
            )
        if self._state_op(op_index, op, source_op):
            return None
        out_indices = [int(i) for i in op.outputs if int(i) >= 0]
        if out_indices:
            base = self._raw_name(out_indices[0])
        elif source_op == "ASSIGN_VARIABLE" and int(op.inputs[0]) in self.handles:
            base = f"assign_{self.handles[int(op.inputs[0])]}"
        else:
            base = source_op.lower()
        name = self._unique(base)
        outputs = tuple(
            self._tensor(index, name, name if len(out_indices) == 1 else f"{name}:{i}")
            for i, index in enumerate(out_indices)
        )
        edge_inputs, constants = self._split_inputs(op)
        attrs = self._attrs(op, source_op, constants)
        kind = TFLITE_OP_KINDS.get(source_op, OpKind.OTHER)
        work = op_work(
            kind,
            [tuple(int(d) for d in self.subgraph.tensors[i].shape) for i in edge_inputs],
            [t.shape for t in outputs],
            attrs,
        )
        new_constants = [i for i in constants if i not in self.counted_constants]
        self.counted_constants.update(new_constants)
        state_bytes = 0
        if source_op in ("READ_VARIABLE", "ASSIGN_VARIABLE"):
            state_bytes = self._note_access(name, op, source_op)
            attrs["variable"] = self.handles[int(op.inputs[0])]
        return Layer(
            name=name,
            op=kind,
            inputs=tuple(self.tensor_names[i] for i in edge_inputs),
            outputs=outputs,
            params=sum(_elements(self.subgraph.tensors[i]) for i in new_constants),
            weight_bytes=sum(self._buffer_bytes(i) for i in new_constants),
            macs=work.macs,
            flops=work.flops,
            source_op=source_op,
            attrs={**attrs, "op_index": op_index, "output_indices": tuple(out_indices)},
            state_bytes=state_bytes,
        )

    def _split_inputs(self, op: Any) -> tuple[list[int], list[int]]:
        edges, constants = [], []
        for raw in op.inputs if op.inputs is not None else []:
            index = int(raw)
            if index < 0 or index in self.handles:  # optional input left out; a variable
                continue
            if index in self.tensor_names:
                edges.append(index)
            elif self._buffer_bytes(index) > 0:
                constants.append(index)
            elif self.subgraph.tensors[index].isVariable:
                raise UnsupportedLayerError(
                    f"{self.label}: tensor {self._raw_name(index)!r} is a variable (stateful "
                    "model); hwsched cannot split stateful models"
                )
            else:
                raise ModelLoadError(
                    f"{self.label}: tensor {self._raw_name(index)!r} is consumed before it is "
                    "produced (operators are not in execution order)"
                )
        return edges, constants

    def _attrs(self, op: Any, source_op: str, constants: list[int]) -> dict[str, Any]:
        options = op.builtinOptions
        attrs: dict[str, Any] = {}
        activation = _FUSED_ACTIVATIONS.get(getattr(options, "fusedActivationFunction", 0), "")
        if source_op in ("RELU", "RELU6", "LEAKY_RELU", "PRELU", "ELU", "LOGISTIC", "TANH",
                         "HARD_SWISH", "GELU", "EXP", "RELU_N1_TO_1", "RELU_0_TO_1"):
            activation = source_op.lower()
        if activation:
            attrs["activation"] = activation
        weights = [self.subgraph.tensors[i] for i in constants]
        if source_op in ("CONV_2D", "DEPTHWISE_CONV_2D", "TRANSPOSE_CONV") and weights:
            filt = tuple(int(d) for d in weights[0].shape)
            attrs["kernel_size"] = filt[1:3]
            if source_op == "CONV_2D":
                attrs["filter_in_channels"] = filt[3]
                data = self.subgraph.tensors[int(op.inputs[0])].shape
                channels = int(data[-1]) if data is not None and len(data) else 0
                if channels and filt[3] and channels % filt[3] == 0:
                    # a grouped CONV_2D's filters each see a slice of the input's channels
                    attrs["groups"] = channels // filt[3]
        if source_op in ("MAX_POOL_2D", "AVERAGE_POOL_2D") and options is not None:
            attrs["pool_size"] = (int(options.filterHeight), int(options.filterWidth))
        if source_op == "FULLY_CONNECTED" and weights:
            attrs["reduce_dim"] = int(weights[0].shape[-1])
        if hasattr(options, "strideH"):
            attrs["strides"] = (int(options.strideH), int(options.strideW))
        if hasattr(options, "dilationHFactor"):  # the receptive-field algebra needs these two
            attrs["dilation_rate"] = (int(options.dilationHFactor), int(options.dilationWFactor))
        if hasattr(options, "padding"):
            attrs["padding"] = "same" if int(options.padding) == _TFLITE_PADDING_SAME else "valid"
        return attrs

    def _tensor(self, index: int, producer: str, name: str) -> Tensor:
        raw = self.subgraph.tensors[index]
        dtype = _DTYPES.get(int(raw.type))
        if dtype is None:
            raise UnsupportedLayerError(
                f"{self.label}: tensor {self._raw_name(index)!r} has TFLite type {raw.type}, "
                "which hwsched cannot represent"
            )
        shape = tuple(int(d) for d in raw.shape) if raw.shape is not None else ()
        if any(d < 0 for d in shape):
            raise UnsupportedLayerError(
                f"{self.label}: tensor {self._raw_name(index)!r} has dynamic shape {shape}"
            )
        self.tensor_names[index] = name
        return Tensor(name, producer, shape, dtype, quantization=_quantization(raw))

    def _op_name(self, op: Any) -> str:
        code = self.model.operatorCodes[op.opcodeIndex]
        builtin = max(int(code.builtinCode), int(code.deprecatedBuiltinCode))
        name = self.op_names.get(builtin, f"BUILTIN_{builtin}")
        if name == "CUSTOM" and code.customCode:
            return f"CUSTOM:{code.customCode.decode(errors='replace')}"
        return name

    def _raw_name(self, index: int) -> str:
        raw = self.subgraph.tensors[index].name
        text = raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw or "")
        return text.split(";")[0] or f"tensor_{index}"

    def _unique(self, base: str) -> str:
        name, count = base, 1
        while name in self.layer_names:
            count += 1
            name = f"{base}#{count}"
        self.layer_names.add(name)
        return name

    def _buffer_bytes(self, index: int) -> int:
        buffer_index = int(self.subgraph.tensors[index].buffer)
        if buffer_index <= 0 or buffer_index >= len(self.model.buffers):
            return 0
        buffer = self.model.buffers[buffer_index]
        if buffer.data is not None:
            return len(buffer.data)
        return int(getattr(buffer, "size", 0) or 0)  # large models keep data outside


def tighten_variable_accesses(layers: list[Layer]) -> list[Layer]:
    """The same layers in a topological order where each variable's accesses lie close
    together: every layer as late as its consumers allow (built backwards from the outputs, a
    layer right after the consumer that last needed it), then every assign moved up to just
    after the value it stores; no access passes another access to the same variable (their
    order is the state's semantics). Input layers stay first.

    The converter hoists every ``READ_VARIABLE`` (and what reads its value) to the top of the
    graph, so a model with one ring buffer per layer would have every variable's span cover
    the whole graph and no cut at all; a stage runs its layers in this order, which LiteRT and
    TFLM execute as written.
    """
    inputs = [layer for layer in layers if layer.op is OpKind.INPUT]
    order = _demand_order([layer for layer in layers if layer.op is not OpKind.INPUT])
    for layer in [lay for lay in order if lay.source_op == "ASSIGN_VARIABLE"]:
        old = order.index(layer)
        order.pop(old)
        needed = set(layer.inputs)
        earlier = (k for k in range(old - 1, -1, -1)
                   if needed & {t.name for t in order[k].outputs}
                   or _same_variable(order[k], layer))
        order.insert(next(earlier, -1) + 1, layer)
    return inputs + order


def _demand_order(layers: list[Layer]) -> list[Layer]:
    """A topological order built from the end: a layer is placed once every layer that needs it
    is (its consumers, and the next access to its variable), most recently freed first."""
    position = {layer.name: k for k, layer in enumerate(layers)}
    producer = {t.name: layer.name for layer in layers for t in layer.outputs}
    needs: dict[str, set[str]] = {layer.name: set() for layer in layers}  # name -> must precede
    for layer in layers:
        needs[layer.name].update(producer[t] for t in layer.inputs if t in producer)
    last_access: dict[str, str] = {}
    for layer in layers:
        variable = layer.attrs.get("variable")
        if variable is not None:
            if variable in last_access:
                needs[layer.name].add(last_access[variable])
            last_access[variable] = layer.name
    waiting = {layer.name: 0 for layer in layers}  # consumers not yet placed
    for before in needs.values():
        for name in before:
            waiting[name] += 1
    ready = sorted((n for n, count in waiting.items() if count == 0), key=position.get)
    placed: list[str] = []
    while ready:
        name = ready.pop()
        placed.append(name)
        freed = []
        for before in sorted(needs[name], key=position.get):
            waiting[before] -= 1
            if waiting[before] == 0:
                freed.append(before)
        ready.extend(freed)
    return [layers[position[name]] for name in reversed(placed)]


def _same_variable(one: Layer, other: Layer) -> bool:
    return "variable" in one.attrs and one.attrs["variable"] == other.attrs["variable"]


def _elements(raw: Any) -> int:
    n = 1
    for d in raw.shape if raw.shape is not None else ():
        n *= int(d)
    return n


def _quantization(raw: Any) -> tuple[float, int] | None:
    q = raw.quantization
    if q is None or q.scale is None or len(q.scale) != 1:
        return None
    zero_point = int(q.zeroPoint[0]) if q.zeroPoint is not None and len(q.zeroPoint) else 0
    return float(q.scale[0]), zero_point
