"""The layer-graph IR: one immutable graph that every stage after loading reads.

A :class:`LayerGraph` is a tuple of :class:`Layer` records in a deterministic topological order.
Each layer consumes tensors by name and produces :class:`Tensor` records; constant tensors
(weights, biases, folded constants) are *not* graph edges, they only count into a layer's
``params`` and ``weight_bytes``. Model inputs are layers of op ``input`` and come before every
other layer, so any prefix of the order that holds them all is a valid pipeline head.

The graph is built once by a loader (:mod:`hwsched.load`) and never mutated: passes are pure
functions that take a graph and return new values. Lookup maps are built at construction.

>>> x = Tensor("x", producer="x", shape=(1, 4), dtype="float32")
>>> y = Tensor("fc", producer="fc", shape=(1, 2), dtype="float32")
>>> g = LayerGraph(
...     name="tiny",
...     layers=(
...         Layer("x", OpKind.INPUT, inputs=(), outputs=(x,)),
...         Layer("fc", OpKind.DENSE, inputs=("x",), outputs=(y,), params=10, weight_bytes=40,
...               macs=8, flops=18),
...     ),
...     outputs=("fc",),
... )
>>> g.producer("fc").name, g.consumers("x"), x.bytes
('fc', ('fc',), 16)
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import Enum
from types import MappingProxyType
from typing import Any

from hwsched.errors import GraphError

#: Bytes per element of the dtypes the IR knows.
DTYPE_BYTES: Mapping[str, int] = MappingProxyType(
    {
        "float64": 8,
        "float32": 4,
        "float16": 2,
        "bfloat16": 2,
        "int64": 8,
        "int32": 4,
        "int16": 2,
        "int8": 1,
        "uint8": 1,
        "bool": 1,
    }
)


class OpKind(str, Enum):
    """The closed set of op kinds. Loaders map framework ops onto these.

    ``OTHER`` is a valid op the IR carries but has no cost rule for: its ``macs`` and ``flops``
    are ``None`` and it is reported as unscored, never silently counted as free.
    """

    INPUT = "input"
    CONV2D = "conv2d"
    DEPTHWISE_CONV2D = "depthwise_conv2d"
    SEPARABLE_CONV2D = "separable_conv2d"
    CONV2D_TRANSPOSE = "conv2d_transpose"
    DENSE = "dense"
    MATMUL = "matmul"
    MAX_POOL = "max_pool"
    AVG_POOL = "avg_pool"
    GLOBAL_POOL = "global_pool"
    BATCH_NORM = "batch_norm"
    ACTIVATION = "activation"
    SOFTMAX = "softmax"
    ELEMENTWISE = "elementwise"
    CONCAT = "concat"
    RESHAPE = "reshape"
    PAD = "pad"
    RESIZE = "resize"
    REDUCE = "reduce"
    QUANTIZE = "quantize"
    IDENTITY = "identity"
    OTHER = "other"


@dataclass(frozen=True)
class Tensor:
    """A tensor that flows between layers (an edge of the graph)."""

    name: str
    producer: str
    shape: tuple[int, ...]
    dtype: str
    #: (scale, zero_point) of a quantized tensor, else None.
    quantization: tuple[float, int] | None = None

    def __post_init__(self) -> None:
        if self.dtype not in DTYPE_BYTES:
            raise GraphError(f"tensor {self.name!r}: unknown dtype {self.dtype!r}")
        if any((not isinstance(d, int)) or d < 0 for d in self.shape):
            raise GraphError(f"tensor {self.name!r}: shape {self.shape} is not fully known")

    @property
    def elements(self) -> int:
        return math.prod(self.shape)

    @property
    def bytes(self) -> int:
        return self.elements * DTYPE_BYTES[self.dtype]

    def bytes_as(self, dtype: str) -> int:
        """Size of this tensor if encoded with ``dtype`` (e.g. int8 over a link)."""
        return self.elements * DTYPE_BYTES[dtype]


@dataclass(frozen=True)
class Layer:
    """One op of the graph (one call of a framework layer, or one TFLite operator)."""

    name: str
    op: OpKind
    inputs: tuple[str, ...]
    outputs: tuple[Tensor, ...]
    params: int = 0
    weight_bytes: int = 0
    #: Multiply-accumulates; None when no cost rule exists for this op.
    macs: int | None = 0
    #: Arithmetic operations (2 per MAC plus elementwise work); None when unscored.
    flops: int | None = 0
    #: The framework's own name for the op (Keras class or TFLite builtin), for reports.
    source_op: str = ""
    attrs: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    #: Bytes of resource-variable state this layer brings into its stage (a streaming model's
    #: ring buffer): persistent from frame to frame, so counted once, on the variable's first
    #: access, beside the weights.
    state_bytes: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.attrs, MappingProxyType):
            object.__setattr__(self, "attrs", MappingProxyType(dict(self.attrs)))

    @property
    def scored(self) -> bool:
        return self.macs is not None and self.flops is not None


@dataclass(frozen=True)
class Variable:
    """A resource variable of a stateful (streaming) model: state kept from one call to the
    next, read and assigned by layers of the graph. It is not an edge: nothing crosses a cut
    for it, so every layer that touches it must run on the same board (:mod:`hwsched.cuts`
    never separates them).

    >>> Variable("ring", (1, 4, 8), "float32", readers=("read",), writers=("assign",)).bytes
    128
    """

    #: The variable's shared name (``VAR_HANDLE``'s ``shared_name``), unique in the graph.
    name: str
    shape: tuple[int, ...]
    dtype: str
    readers: tuple[str, ...] = ()
    writers: tuple[str, ...] = ()
    quantization: tuple[float, int] | None = None

    def __post_init__(self) -> None:
        if self.dtype not in DTYPE_BYTES:
            raise GraphError(f"variable {self.name!r}: unknown dtype {self.dtype!r}")

    @property
    def accessors(self) -> tuple[str, ...]:
        """Every layer that reads or assigns the variable, readers first."""
        return tuple(dict.fromkeys((*self.readers, *self.writers)))

    @property
    def bytes(self) -> int:
        return math.prod(self.shape) * DTYPE_BYTES[self.dtype]


@dataclass(frozen=True)
class LayerGraph:
    """An immutable DAG of layers in topological order, with lookup maps.

    Raises :class:`~hwsched.errors.GraphError` when names repeat, a consumed tensor has no
    producer, an output is unknown, or the order is not topological.
    """

    name: str
    layers: tuple[Layer, ...]
    outputs: tuple[str, ...]
    #: Where the graph came from (zoo name, file path) for reports.
    source: str = ""
    #: Resource variables of a stateful model (empty for a stateless one).
    variables: tuple[Variable, ...] = ()
    _layer_index: Mapping[str, int] = field(init=False, repr=False, compare=False)
    _tensors: Mapping[str, Tensor] = field(init=False, repr=False, compare=False)
    _consumers: Mapping[str, tuple[str, ...]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        layer_index: dict[str, int] = {}
        tensors: dict[str, Tensor] = {}
        consumers: dict[str, list[str]] = {}
        for position, layer in enumerate(self.layers):
            if layer.name in layer_index:
                raise GraphError(f"graph {self.name!r}: duplicate layer name {layer.name!r}")
            for tensor_name in layer.inputs:
                if tensor_name not in tensors:
                    raise GraphError(
                        f"graph {self.name!r}: layer {layer.name!r} consumes tensor "
                        f"{tensor_name!r} that no earlier layer produces"
                    )
                users = consumers[tensor_name]
                if not users or users[-1] != layer.name:
                    users.append(layer.name)
            layer_index[layer.name] = position
            for tensor in layer.outputs:
                if tensor.name in tensors:
                    raise GraphError(f"graph {self.name!r}: duplicate tensor {tensor.name!r}")
                if tensor.producer != layer.name:
                    raise GraphError(
                        f"tensor {tensor.name!r} names producer {tensor.producer!r} "
                        f"but is an output of layer {layer.name!r}"
                    )
                tensors[tensor.name] = tensor
                consumers[tensor.name] = []
        for out in self.outputs:
            if out not in tensors:
                raise GraphError(f"graph {self.name!r}: output tensor {out!r} does not exist")
        n_inputs = sum(1 for layer in self.layers if layer.op is OpKind.INPUT)
        if n_inputs == 0:
            raise GraphError(f"graph {self.name!r} has no input layer")
        misplaced = [lay.name for lay in self.layers[n_inputs:] if lay.op is OpKind.INPUT]
        if misplaced:
            # Every stage boundary must see all model inputs in its head (they enter at stage 0)
            raise GraphError(
                f"graph {self.name!r}: input layer {misplaced[0]!r} must come before every "
                "non-input layer in the order"
            )
        self._check_variables(layer_index)
        object.__setattr__(self, "_layer_index", MappingProxyType(layer_index))
        object.__setattr__(self, "_tensors", MappingProxyType(tensors))
        object.__setattr__(
            self,
            "_consumers",
            MappingProxyType({name: tuple(users) for name, users in consumers.items()}),
        )

    def _check_variables(self, layer_index: Mapping[str, int]) -> None:
        names: set[str] = set()
        for variable in self.variables:
            if variable.name in names:
                raise GraphError(f"graph {self.name!r}: duplicate variable {variable.name!r}")
            names.add(variable.name)
            if not variable.accessors:
                raise GraphError(f"graph {self.name!r}: variable {variable.name!r} is never "
                                 "read or assigned")
            for layer_name in variable.accessors:
                if layer_name not in layer_index:
                    raise GraphError(f"graph {self.name!r}: variable {variable.name!r} names "
                                     f"layer {layer_name!r}, which does not exist")

    # -- queries -----------------------------------------------------------------------------
    @property
    def stateful(self) -> bool:
        """Whether the model keeps state (resource variables) from one call to the next."""
        return bool(self.variables)

    def variable_span(self, variable: Variable) -> tuple[int, int]:
        """Positions of the first and last layer that touch ``variable``: a stage holding it
        holds every layer in between."""
        positions = [self._layer_index[name] for name in variable.accessors]
        return min(positions), max(positions)

    def __len__(self) -> int:
        return len(self.layers)

    def __iter__(self) -> Iterator[Layer]:
        return iter(self.layers)

    def layer(self, name: str) -> Layer:
        try:
            return self.layers[self._layer_index[name]]
        except KeyError:
            raise GraphError(f"graph {self.name!r} has no layer {name!r}") from None

    def position(self, layer_name: str) -> int:
        """Index of a layer in the topological order."""
        self.layer(layer_name)
        return self._layer_index[layer_name]

    def tensor(self, name: str) -> Tensor:
        try:
            return self._tensors[name]
        except KeyError:
            raise GraphError(f"graph {self.name!r} has no tensor {name!r}") from None

    def producer(self, tensor_name: str) -> Layer:
        return self.layer(self.tensor(tensor_name).producer)

    def consumers(self, tensor_name: str) -> tuple[str, ...]:
        """Names of the layers that consume a tensor, in topological order."""
        self.tensor(tensor_name)
        return self._consumers[tensor_name]

    def predecessors(self, layer_name: str) -> tuple[str, ...]:
        """Producing layers of a layer's inputs, without repeats, in input order."""
        seen: dict[str, None] = {}
        for tensor_name in self.layer(layer_name).inputs:
            seen.setdefault(self._tensors[tensor_name].producer, None)
        return tuple(seen)

    def successors(self, layer_name: str) -> tuple[str, ...]:
        seen: dict[str, None] = {}
        for tensor in self.layer(layer_name).outputs:
            for user in self._consumers[tensor.name]:
                seen.setdefault(user, None)
        return tuple(seen)

    @property
    def input_layers(self) -> tuple[Layer, ...]:
        return tuple(layer for layer in self.layers if layer.op is OpKind.INPUT)

    @property
    def tensors(self) -> Mapping[str, Tensor]:
        return self._tensors

    @property
    def total_macs(self) -> int:
        return sum(layer.macs or 0 for layer in self.layers)

    @property
    def total_params(self) -> int:
        return sum(layer.params for layer in self.layers)

    @property
    def unscored_layers(self) -> tuple[Layer, ...]:
        return tuple(layer for layer in self.layers if not layer.scored)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dump of the graph (layers in topological order)."""
        result: dict[str, Any] = {
            "model": self.name,
            "source": self.source,
            "outputs": list(self.outputs),
            "layers": [layer_to_dict(self, layer) for layer in self.layers],
        }
        if self.variables:
            result["variables"] = [variable_to_dict(v) for v in self.variables]
        return result


def variable_to_dict(variable: Variable) -> dict[str, Any]:
    return {
        "name": variable.name,
        "shape": list(variable.shape),
        "dtype": variable.dtype,
        "bytes": variable.bytes,
        "readers": list(variable.readers),
        "writers": list(variable.writers),
    }


def tensor_to_dict(tensor: Tensor) -> dict[str, Any]:
    return {
        "name": tensor.name,
        "producer": tensor.producer,
        "shape": list(tensor.shape),
        "dtype": tensor.dtype,
        "bytes": tensor.bytes,
    }


def layer_to_dict(graph: LayerGraph, layer: Layer) -> dict[str, Any]:
    return {
        "name": layer.name,
        "op": layer.op.value,
        "source_op": layer.source_op,
        "inputs": list(graph.predecessors(layer.name)),
        "input_tensors": list(layer.inputs),
        "outputs": [tensor_to_dict(t) for t in layer.outputs],
        "params": layer.params,
        "weight_bytes": layer.weight_bytes,
        "macs": layer.macs,
        "flops": layer.flops,
    }
