"""Read a Keras 3 functional (or sequential) model into the IR.

The reader walks the call graph from the model's outputs back to its inputs through each
tensor's ``_keras_history``, so nodes that later sub-model construction adds to shared layers
never leak in. Nested functional models (a model used as a layer) are flattened: their layers
appear with a ``outer/inner`` name prefix and their inputs are bound to the outer tensors.

Besides the :class:`~hwsched.ir.LayerGraph`, the reader returns a :class:`KerasBinding` that
maps every IR layer to the Keras operation and call node it came from, and every Keras tensor
to its IR tensor name. The exporter replays those calls to build one model per stage.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from hwsched.errors import UnsupportedLayerError
from hwsched.flops import op_work
from hwsched.ir import DTYPE_BYTES, Layer, LayerGraph, OpKind, Tensor

#: Keras layer/operation class name -> IR op kind.
KERAS_OP_KINDS: Mapping[str, OpKind] = MappingProxyType(
    {
        "InputLayer": OpKind.INPUT,
        "Conv1D": OpKind.CONV2D,
        "Conv2D": OpKind.CONV2D,
        "Conv3D": OpKind.CONV2D,
        "DepthwiseConv1D": OpKind.DEPTHWISE_CONV2D,
        "DepthwiseConv2D": OpKind.DEPTHWISE_CONV2D,
        "SeparableConv1D": OpKind.SEPARABLE_CONV2D,
        "SeparableConv2D": OpKind.SEPARABLE_CONV2D,
        "Conv2DTranspose": OpKind.CONV2D_TRANSPOSE,
        "Dense": OpKind.DENSE,
        "Matmul": OpKind.MATMUL,
        "MaxPooling1D": OpKind.MAX_POOL,
        "MaxPooling2D": OpKind.MAX_POOL,
        "AveragePooling1D": OpKind.AVG_POOL,
        "AveragePooling2D": OpKind.AVG_POOL,
        "GlobalAveragePooling1D": OpKind.GLOBAL_POOL,
        "GlobalAveragePooling2D": OpKind.GLOBAL_POOL,
        "GlobalMaxPooling1D": OpKind.GLOBAL_POOL,
        "GlobalMaxPooling2D": OpKind.GLOBAL_POOL,
        "BatchNormalization": OpKind.BATCH_NORM,
        "Normalization": OpKind.BATCH_NORM,
        "Activation": OpKind.ACTIVATION,
        "ReLU": OpKind.ACTIVATION,
        "LeakyReLU": OpKind.ACTIVATION,
        "PReLU": OpKind.ACTIVATION,
        "ELU": OpKind.ACTIVATION,
        "Softmax": OpKind.SOFTMAX,
        "Add": OpKind.ELEMENTWISE,
        "Subtract": OpKind.ELEMENTWISE,
        "Multiply": OpKind.ELEMENTWISE,
        "Divide": OpKind.ELEMENTWISE,
        "TrueDivide": OpKind.ELEMENTWISE,
        "Average": OpKind.ELEMENTWISE,
        "Maximum": OpKind.ELEMENTWISE,
        "Minimum": OpKind.ELEMENTWISE,
        "Rescaling": OpKind.ELEMENTWISE,
        "Concatenate": OpKind.CONCAT,
        "Reshape": OpKind.RESHAPE,
        "Flatten": OpKind.RESHAPE,
        "Permute": OpKind.RESHAPE,
        "GetItem": OpKind.RESHAPE,
        "Cropping1D": OpKind.RESHAPE,
        "Cropping2D": OpKind.RESHAPE,
        "ExpandDims": OpKind.RESHAPE,
        "Squeeze": OpKind.RESHAPE,
        "ZeroPadding1D": OpKind.PAD,
        "ZeroPadding2D": OpKind.PAD,
        "UpSampling1D": OpKind.RESIZE,
        "UpSampling2D": OpKind.RESIZE,
        "Resizing": OpKind.RESIZE,
        "Dropout": OpKind.IDENTITY,
        "SpatialDropout1D": OpKind.IDENTITY,
        "SpatialDropout2D": OpKind.IDENTITY,
        "GaussianNoise": OpKind.IDENTITY,
        "GaussianDropout": OpKind.IDENTITY,
        "ActivityRegularization": OpKind.IDENTITY,
        "Identity": OpKind.IDENTITY,
    }
)

#: Config keys copied into a layer's attrs (those the compute rules and reports use).
_ATTR_KEYS = ("kernel_size", "pool_size", "strides", "padding", "groups", "use_bias",
              "activation", "depth_multiplier", "units", "filters", "axis",
              "dilation_rate", "data_format")


@dataclass(frozen=True)
class KerasCall:
    """The Keras operation and call node behind one IR layer."""

    operation: Any
    node: Any


@dataclass(frozen=True)
class KerasBinding:
    """Links from the IR back to the Keras model, for export.

    ``calls`` maps IR layer names (non-input) to their Keras calls; ``tensor_names`` maps
    ``id(KerasTensor)`` of every tensor in the (flattened) graph to its IR tensor name.
    """

    model: Any
    calls: Mapping[str, KerasCall]
    tensor_names: Mapping[int, str]


class _Reader:
    """One pass over a Keras model; holds the name maps while the IR is built."""

    def __init__(self, model: Any, graph_name: str, source: str) -> None:
        self.model = model
        self.graph_name = graph_name
        self.source = source
        self.layers: list[Layer] = []
        self.calls: dict[str, KerasCall] = {}
        self.tensor_names: dict[int, str] = {}
        self.keep_alive: list[Any] = []  # ids are only stable while the tensors live
        self.visited_nodes: set[int] = set()
        self.layer_names: set[str] = set()

    def read(self) -> tuple[LayerGraph, KerasBinding]:
        inputs, outputs = _model_io(self.model, self.graph_name)
        for kt in inputs:
            self._add_input(kt)
        for kt in outputs:
            self._visit_tensor(kt, prefix="")
        graph = LayerGraph(
            name=self.graph_name,
            layers=tuple(self.layers),
            outputs=tuple(self.tensor_names[id(kt)] for kt in outputs),
            source=self.source,
        )
        binding = KerasBinding(
            model=self.model,
            calls=MappingProxyType(self.calls),
            tensor_names=MappingProxyType(self.tensor_names),
        )
        return graph, binding

    # -- traversal -----------------------------------------------------------------------------
    def _visit_tensor(self, kt: Any, prefix: str) -> None:
        if id(kt) in self.tensor_names:
            return
        history = getattr(kt, "_keras_history", None)
        if history is None or history.operation is None:
            raise UnsupportedLayerError(
                f"model {self.graph_name!r}: tensor {getattr(kt, 'name', kt)!r} is not connected "
                "to the model inputs"
            )
        operation = history.operation
        node = operation._inbound_nodes[history.node_index]
        if id(node) in self.visited_nodes:
            return
        self.visited_nodes.add(id(node))
        for arg in node.arguments.keras_tensors:
            self._visit_tensor(arg, prefix)
        if _is_functional(operation):
            self._inline_model(operation, node, prefix)
        elif type(operation).__name__ == "InputLayer":
            raise UnsupportedLayerError(
                f"model {self.graph_name!r}: input {operation.name!r} is used but is not one of "
                "the model's inputs"
            )
        else:
            self._add_call(operation, node, prefix)

    def _inline_model(self, model: Any, node: Any, prefix: str) -> None:
        """Flatten a nested model: bind its inputs to the call's arguments, then read it."""
        inner_inputs, inner_outputs = _model_io(model, model.name)
        call_args = node.arguments.keras_tensors
        if len(call_args) != len(inner_inputs):
            raise UnsupportedLayerError(
                f"nested model {model.name!r} is called with {len(call_args)} tensors but has "
                f"{len(inner_inputs)} inputs"
            )
        for outer, inner in zip(call_args, inner_inputs, strict=True):
            self._alias(inner, self.tensor_names[id(outer)])
        inner_prefix = f"{prefix}{model.name}/"
        for kt in inner_outputs:
            self._visit_tensor(kt, inner_prefix)
        for outer, inner in zip(node.outputs, inner_outputs, strict=True):
            self._alias(outer, self.tensor_names[id(inner)])

    def _alias(self, kt: Any, tensor_name: str) -> None:
        self.keep_alive.append(kt)
        self.tensor_names[id(kt)] = tensor_name

    # -- layers --------------------------------------------------------------------------------
    def _add_input(self, kt: Any) -> None:
        operation = kt._keras_history.operation
        name = self._unique_name(operation.name)
        tensor = self._make_tensor(kt, name, name)
        self._alias(kt, tensor.name)
        self.layers.append(
            Layer(name, OpKind.INPUT, inputs=(), outputs=(tensor,), source_op="InputLayer")
        )

    def _add_call(self, operation: Any, node: Any, prefix: str) -> None:
        source_op = type(operation).__name__
        name = self._unique_name(prefix + operation.name)
        outputs = tuple(
            self._make_tensor(kt, name, name if len(node.outputs) == 1 else f"{name}:{i}")
            for i, kt in enumerate(node.outputs)
        )
        for kt, tensor in zip(node.outputs, outputs, strict=True):
            self._alias(kt, tensor.name)
        inputs = tuple(self.tensor_names[id(kt)] for kt in node.arguments.keras_tensors)
        attrs = _layer_attrs(operation)
        op = _op_kind(operation, attrs)
        weights = list(getattr(operation, "weights", []) or [])
        work = op_work(
            op,
            [_static_shape(kt, name, self.graph_name) for kt in node.arguments.keras_tensors],
            [t.shape for t in outputs],
            attrs,
        )
        self.layers.append(
            Layer(
                name=name,
                op=op,
                inputs=inputs,
                outputs=outputs,
                params=int(sum(_size(w) for w in weights)),
                weight_bytes=int(sum(_size(w) * _itemsize(w) for w in weights)),
                macs=work.macs,
                flops=work.flops,
                source_op=source_op,
                attrs=attrs,
            )
        )
        self.calls[name] = KerasCall(operation=operation, node=node)

    def _unique_name(self, base: str) -> str:
        name, call = base, 1
        while name in self.layer_names:  # a shared layer called again
            call += 1
            name = f"{base}@{call}"
        self.layer_names.add(name)
        return name

    def _make_tensor(self, kt: Any, producer: str, name: str) -> Tensor:
        dtype = str(getattr(kt, "dtype", "float32"))
        if dtype not in DTYPE_BYTES:
            raise UnsupportedLayerError(
                f"model {self.graph_name!r}: layer {producer!r} outputs dtype {dtype!r}, "
                "which hwsched cannot represent"
            )
        return Tensor(name, producer, _static_shape(kt, producer, self.graph_name), dtype)


def read_keras_model(
    model: Any, name: str | None = None, source: str = ""
) -> tuple[LayerGraph, KerasBinding]:
    """Read a Keras functional/sequential model into ``(LayerGraph, KerasBinding)``."""
    return _Reader(model, name or model.name, source).read()


def _model_io(model: Any, graph_name: str) -> tuple[list[Any], list[Any]]:
    try:
        inputs, outputs = list(model.inputs), list(model.outputs)
    except (AttributeError, ValueError) as error:
        raise UnsupportedLayerError(
            f"model {graph_name!r} is a subclassed or unbuilt Keras model without a layer "
            f"graph ({error}); hwsched reads functional and sequential models"
        ) from None
    if not inputs or not outputs:
        raise UnsupportedLayerError(f"model {graph_name!r} has no inputs or outputs")
    return inputs, outputs


def _is_functional(operation: Any) -> bool:
    return hasattr(operation, "inputs") and hasattr(operation, "outputs") and hasattr(
        operation, "_run_through_graph"
    )


def _layer_attrs(operation: Any) -> dict[str, Any]:
    try:
        config = operation.get_config()
    except (NotImplementedError, TypeError, AttributeError):
        config = {}
    attrs = {key: _plain(config[key]) for key in _ATTR_KEYS if key in config}
    source_op = type(operation).__name__
    if source_op in ("ReLU", "LeakyReLU", "PReLU", "ELU"):
        attrs["activation"] = "relu6" if config.get("max_value") == 6 else source_op.lower()
    return attrs


def _op_kind(operation: Any, attrs: Mapping[str, Any]) -> OpKind:
    source_op = type(operation).__name__
    kind = KERAS_OP_KINDS.get(source_op, OpKind.OTHER)
    if kind is OpKind.ACTIVATION and attrs.get("activation") == "softmax":
        return OpKind.SOFTMAX
    return kind


def _plain(value: Any) -> Any:
    """Config values as hashable plain Python (lists become tuples, objects their names)."""
    if isinstance(value, (list, tuple)):
        return tuple(_plain(v) for v in value)
    if isinstance(value, (int, float, str, bool)) or value is None:
        return value
    if isinstance(value, dict):
        return str(value.get("config", {}).get("name", value.get("class_name", "")))
    return str(value)


def _static_shape(kt: Any, layer: str, graph_name: str) -> tuple[int, ...]:
    shape = tuple(kt.shape)
    if shape and shape[0] is None:
        shape = (1, *shape[1:])  # hwsched plans for batch 1
    if any(d is None for d in shape):
        raise UnsupportedLayerError(
            f"model {graph_name!r}: layer {layer!r} has a tensor of dynamic shape "
            f"{tuple(kt.shape)}; build the model with a fixed input shape"
        )
    return tuple(int(d) for d in shape)


def _size(weight: Any) -> int:
    n = 1
    for d in weight.shape:
        n *= int(d)
    return n


def _itemsize(weight: Any) -> int:
    return DTYPE_BYTES.get(str(weight.dtype), 4)
