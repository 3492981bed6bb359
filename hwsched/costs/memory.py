"""Memory models: weights and peak activation memory of a stage.

A memory model maps a graph and a precision to an :class:`ActivationProfile`: the activation
bytes live at each position of the topological order. The peak activation memory of the stage
of positions ``[first, last]`` is the maximum over those positions, so any stage's peak is a
range-max query and the solver can tabulate all stages cheaply.

``arena`` (default) simulates tensor lifetimes the way TFLite's arena planner does: a tensor is
live from the position of its producer through its last consumer (through the end of the graph
for model outputs, only at its producer when nothing consumes it). While the layer at position
``p`` runs, its inputs and outputs and every tensor still needed later are live. This holds for
a stage too: a tensor produced before the stage and still needed at or after ``p`` is a stage
input (or passes through the stage to a later one) and is held in the stage's arena, and a
tensor the stage produces for a later stage is held until the stage ends.

``largest_tensor`` is the cnn-parted rule: the inputs plus outputs of the layer running at ``p``,
ignoring tensors held for later layers (an optimistic bound).

Activation tensors are counted in the stage's precision (``float32``/``float16``/``int8``);
integer index tensors keep their own size. Weights are ``params`` elements in the precision.

>>> from hwsched.ir import Layer, LayerGraph, OpKind, Tensor
>>> def t(n): return Tensor(n, producer=n, shape=(1, 100), dtype="float32")
>>> g = LayerGraph("res", (
...     Layer("x", OpKind.INPUT, (), (t("x"),)),
...     Layer("a", OpKind.ACTIVATION, ("x",), (t("a"),)),
...     Layer("add", OpKind.ELEMENTWISE, ("x", "a"), (t("add"),)),
... ), outputs=("add",))
>>> arena(g, "fp32").live_bytes.tolist()     # x alone; x and a; x, a and add
[400, 800, 1200]
>>> largest_tensor(g, "fp32").live_bytes.tolist()
[400, 800, 1200]
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

from hwsched.costs.transfer import tensor_bytes_as
from hwsched.cuts import last_use_positions
from hwsched.hardware import PRECISION_DTYPES, Platform
from hwsched.ir import DTYPE_BYTES, Layer, LayerGraph


@dataclass(frozen=True, eq=False)
class ActivationProfile:
    """Bytes of activations live at each position of the topological order."""

    model: str
    precision: str
    live_bytes: np.ndarray

    def peak_bytes(self, first: int, last: int) -> int:
        """Peak activation bytes of the stage of positions ``first..last`` (inclusive)."""
        return int(self.live_bytes[first : last + 1].max())


def layer_weight_bytes(layer: Layer, precision: str) -> int:
    """Weights of a layer stored in ``precision``; a layer without a param count keeps its
    recorded weight bytes. A stateful model's resource-variable state (``state_bytes``, in the
    variable's own dtype) is persistent like weights and is counted with them, once per stage
    that holds the variable."""
    if layer.params:
        return layer.params * DTYPE_BYTES[PRECISION_DTYPES[precision]] + layer.state_bytes
    return layer.weight_bytes + layer.state_bytes


def weight_bytes(graph: LayerGraph, precision: str) -> np.ndarray:
    """Weight bytes of each layer in ``precision``."""
    return np.array([layer_weight_bytes(layer, precision) for layer in graph], dtype=np.int64)


def arena(graph: LayerGraph, precision: str) -> ActivationProfile:
    """Tensor lifetimes over the topological order (TFLite arena planner)."""
    dtype = PRECISION_DTYPES[precision]
    last_use = last_use_positions(graph)
    delta = np.zeros(len(graph) + 1, dtype=np.int64)
    for position, layer in enumerate(graph):
        for tensor in layer.outputs:
            end = min(max(last_use.get(tensor.name, position), position), len(graph) - 1)
            size = tensor_bytes_as(tensor, dtype)
            delta[position] += size
            delta[end + 1] -= size
    return ActivationProfile("arena", precision, np.cumsum(delta[:-1]))


def largest_tensor(graph: LayerGraph, precision: str) -> ActivationProfile:
    """Inputs plus outputs of the layer at each position (cnn-parted's feature-map rule)."""
    dtype = PRECISION_DTYPES[precision]
    live = [
        sum(tensor_bytes_as(graph.tensor(name), dtype) for name in dict.fromkeys(layer.inputs))
        + sum(tensor_bytes_as(tensor, dtype) for tensor in layer.outputs)
        for layer in graph
    ]
    return ActivationProfile("largest_tensor", precision, np.array(live, dtype=np.int64))


MemoryModel = Callable[[LayerGraph, str], ActivationProfile]

MEMORY_MODELS: Mapping[str, MemoryModel] = MappingProxyType(
    {"arena": arena, "largest_tensor": largest_tensor}
)


def memory_fit(platform: Platform, weights_bytes: int, peak_activation_bytes: int) -> str | None:
    """None when a stage fits the platform's memory, else the reason it does not.

    With flash (MCUs) weights live in flash and activations in RAM; otherwise both share RAM.
    """
    if platform.flash_bytes is not None:
        if weights_bytes > platform.flash_bytes:
            return (
                f"weights {weights_bytes} B exceed {platform.name} flash {platform.flash_bytes} B"
            )
        if peak_activation_bytes > platform.ram_bytes:
            return (
                f"peak activations {peak_activation_bytes} B exceed {platform.name} RAM "
                f"{platform.ram_bytes} B"
            )
        return None
    total = weights_bytes + peak_activation_bytes
    if total > platform.ram_bytes:
        return (
            f"weights + peak activations {total} B exceed {platform.name} RAM "
            f"{platform.ram_bytes} B"
        )
    return None


# -- TensorFlow Lite Micro -------------------------------------------------------------------
# TFLM's arena holds more than activations: a head of planned tensors plus kernels' scratch
# buffers, and a tail of persistent structures per tensor, per op and per stage input/output.
# Measured with tflite-micro's recording allocator (host build) on digits_cnn and the test
# models split at every kind of cut (shared/RESEARCH.md, issue 16); the activation-only model
# predicted 3,072 and 42 bytes where TFLM used 6,848 and 1,296.

#: Buffers in the TFLM arena are aligned to this many bytes.
TFLM_ALIGNMENT_BYTES = 16
#: Per stage: allocator, graph and subgraph bookkeeping plus the persistent-buffer base.
TFLM_STAGE_BYTES = 518
#: Per tensor (activations and constants): a TfLiteEvalTensor (24) and allocator bookkeeping.
TFLM_TENSOR_BYTES = 34.5
#: Per stage input or output: a persistent TfLiteTensor (64) and its quantization data (32).
TFLM_IO_BYTES = 96
#: Per TFLite op: its NodeAndRegistration.
TFLM_OP_BYTES = 64
#: Per-op kernel data (OpData structs) by TFLite op; per-channel int8 data is added for convs.
TFLM_OP_DATA_BYTES: Mapping[str, int] = MappingProxyType({
    "CONV_2D": 80, "FULLY_CONNECTED": 36, "MEAN": 72, "ADD": 56, "MUL": 40, "LOGISTIC": 40,
    "RELU": 40, "SOFTMAX": 76, "OTHER": 48,
})
#: int8 convolutions and dense layers keep a multiplier and a shift (int32 each) per output
#: channel (TensorFlow 2.21's converter quantizes dense weights per channel too): a streaming
#: model's first FULLY_CONNECTED grew TFLM's tail by exactly 8 B per output channel from 8 to
#: 64 channels.
TFLM_PER_CHANNEL_BYTES = 8
#: A stage holding resource variables: its CALL_ONCE and init subgraph's bookkeeping. Fitted
#: (with the FULLY_CONNECTED data above) on streaming ring models with 4x8 to 16x32 and 4x64
#: rings, float or int8, whole and split on both sides of the ring, and a 3-ring model
#: (tests/test_mcu_memory.py, tests/test_stateful.py), with digits_cnn and a residual model
#: held within 5%: every stage within 8% of TFLM's measured arena. Not modelled: TFLM's greedy
#: planner can fragment the head (a 16x32 int8 ring stage used 1,536 B where the tensors
#: live at once need 1,024 B), which this constant partly absorbs.
TFLM_STATE_STAGE_BYTES = 336
#: Per resource variable beyond its buffer: a VAR_HANDLE in the stage and a VAR_HANDLE plus an
#: ASSIGN_VARIABLE in the init subgraph (ops, tensors, the resource-variable record): each
#: further variable added 495 B on those models.
TFLM_VARIABLE_BYTES = 495
#: Activations a convolution, dense layer, batch norm or add can fuse (no op of their own).
_FUSED_ACTIVATIONS = frozenset({"relu", "relu6", "linear", None})
_FUSES_ACTIVATION = frozenset({"conv2d", "depthwise_conv2d", "dense", "batch_norm",
                               "elementwise"})
_WEIGHTED = frozenset({"conv2d", "depthwise_conv2d", "conv2d_transpose", "dense"})
#: int8 kernels whose TFLM op data holds a multiplier and shift per output channel.
_PER_CHANNEL = frozenset({"conv2d", "depthwise_conv2d", "conv2d_transpose", "dense"})
_ACTIVATION_OPS = MappingProxyType({"sigmoid": "LOGISTIC", "softmax": "SOFTMAX",
                                    "relu": "RELU", "relu6": "RELU"})


def _aligned(size: int) -> int:
    return -(-size // TFLM_ALIGNMENT_BYTES) * TFLM_ALIGNMENT_BYTES


def is_quantized(graph: LayerGraph) -> bool:
    """Whether ``graph`` was read from a quantized TFLite file: then every tensor already has
    the dtype the engine allocates. An int8 model keeps some tensors float (a streaming ring
    the converter left float32, the DEQUANTIZE feeding its ASSIGN_VARIABLE): sizing those as
    int8 priced a 16x32 float ring's stage 31% under TFLM's measured arena.

    >>> from hwsched.ir import Layer, LayerGraph, OpKind, Tensor
    >>> x = Tensor("x", producer="x", shape=(1, 4), dtype="int8", quantization=(0.1, 0))
    >>> is_quantized(LayerGraph("q", (Layer("x", OpKind.INPUT, (), (x,)),), outputs=("x",)))
    True
    """
    return any(tensor.quantization is not None for layer in graph for tensor in layer.outputs)


def tflm_activations(graph: LayerGraph, precision: str) -> ActivationProfile:
    """The TFLM head: tensor lifetimes as in :func:`arena`, each buffer 16-byte aligned, plus
    the int32 accumulators (one per channel) and bookkeeping that MEAN keeps in scratch.

    Tensors are sized in ``precision`` when the stage is converted from a float model, and in
    their own dtype when the graph is already quantized (:func:`is_quantized`)."""
    dtype = PRECISION_DTYPES[precision]
    last_use = last_use_positions(graph)
    # a folded layer (batch norm or ReLU into a conv, padding, a size-1 reshape) writes no
    # buffer of its own: its output is its input's buffer, which then lives as long as either
    root: dict[str, str] = {}
    end_of: dict[str, int] = {}
    start_of: dict[str, int] = {}
    for position, layer in enumerate(graph):
        for tensor in layer.outputs:
            end = min(max(last_use.get(tensor.name, position), position), len(graph) - 1)
            if len(layer.outputs) == 1 and _folds(graph, layer, 0):
                base = root.get(layer.inputs[0], layer.inputs[0])
                root[tensor.name] = base
                end_of[base] = max(end_of[base], end)
            else:
                start_of[tensor.name], end_of[tensor.name] = position, end
    delta = np.zeros(len(graph) + 1, dtype=np.int64)
    own_dtypes = is_quantized(graph)
    for name, start in start_of.items():
        tensor = graph.tensor(name)
        size = _aligned(tensor.bytes if own_dtypes else tensor_bytes_as(tensor, dtype))
        delta[start] += size
        delta[end_of[name] + 1] -= size
    for position, layer in enumerate(graph):
        if layer.op.value == "global_pool" and precision == "int8":
            channels = layer.outputs[0].shape[-1] if layer.outputs[0].shape else 1
            scratch = _aligned(4 * channels) + 2 * TFLM_ALIGNMENT_BYTES
            delta[position] += scratch
            delta[position + 1] -= scratch
    return ActivationProfile("tflm", precision, np.cumsum(delta[:-1]))


def layer_tflite_ops(graph: LayerGraph, layer: Layer) -> list[str]:
    """The TFLite operators a layer is in its stage file, by the names ``edgetpu_compiler``
    reports: a layer read from a TFLite file is its own op; a Keras layer becomes the ops the
    converter makes of it (none when folded into a neighbour).

    >>> from hwsched.ir import Layer, LayerGraph, OpKind, Tensor
    >>> def t(n): return Tensor(n, producer=n, shape=(1, 8, 8, 4), dtype="float32")
    >>> g = LayerGraph("g", (Layer("x", OpKind.INPUT, (), (t("x"),)),
    ...     Layer("dw", OpKind.DEPTHWISE_CONV2D, ("x",), (t("dw"),), params=40),
    ...     Layer("relu", OpKind.ACTIVATION, ("dw",), (t("relu"),), attrs={"activation": "relu"})),
    ...     outputs=("relu",))
    >>> [layer_tflite_ops(g, layer) for layer in g]
    [[], ['DEPTHWISE_CONV_2D'], []]
    """
    if "op_index" in layer.attrs:
        return [layer.source_op] if layer.source_op else []
    ops = _tflite_ops(layer, _folds(graph, layer, 0))
    if layer.op.value == "depthwise_conv2d" and ops:
        ops[0] = "DEPTHWISE_CONV_2D"  # the tail prices it as CONV_2D; the compiler names it
    return ops


def _tflite_ops(layer: Layer, fused_into_previous: bool) -> list[str]:
    """The TFLite ops a layer becomes on TFLM (none when the converter folds it away)."""
    kind = layer.op.value
    activation = layer.attrs.get("activation")
    if kind == "input" or (kind in ("batch_norm", "pad", "identity", "reshape")
                           and fused_into_previous):
        return []
    if kind == "activation":
        return [] if fused_into_previous else [_ACTIVATION_OPS.get(activation, "OTHER")]
    main = {"conv2d": "CONV_2D", "depthwise_conv2d": "CONV_2D", "dense": "FULLY_CONNECTED",
            "global_pool": "MEAN", "batch_norm": "MUL", "softmax": "SOFTMAX"}.get(kind)
    if kind == "elementwise":
        main = "ADD" if layer.source_op == "Add" else "MUL"
    ops = [main or "OTHER"]
    if kind == "batch_norm":
        ops.append("ADD")
    if kind in _WEIGHTED and activation not in _FUSED_ACTIVATIONS:
        ops.append(_ACTIVATION_OPS.get(activation, "OTHER"))
    return ops


def _folds(graph: LayerGraph, layer: Layer, first: int) -> bool:
    """Whether the converter folds ``layer`` into its producer (batch norm, ReLU) or its
    consumer (padding before a convolution) inside the same stage.

    A layer read from a TFLite file (``op_index``) is an op the converter already kept: it
    folds into nothing (a RESHAPE there is a TFLM op with its own buffer), except an
    ASSIGN_VARIABLE, whose op is priced with its variable (``TFLM_VARIABLE_BYTES``)."""
    kind = layer.op.value
    if "op_index" in layer.attrs and layer.source_op != "ASSIGN_VARIABLE":
        return False
    if kind == "pad":
        return True  # explicit padding becomes the next convolution's padding
    if kind == "reshape":  # adding or dropping size-1 dims is left to broadcasting
        source = graph.tensor(layer.inputs[0]).shape if layer.inputs else ()
        return [d for d in source if d != 1] == [d for d in layer.outputs[0].shape if d != 1]
    if kind not in ("batch_norm", "activation", "identity") or len(layer.inputs) != 1:
        return False
    position = graph.position(graph.tensor(layer.inputs[0]).producer)
    if position < first:
        return False
    source = graph.layers[position].op.value
    if kind == "batch_norm":
        return source in _WEIGHTED
    if kind == "activation":
        return (layer.attrs.get("activation") in _FUSED_ACTIVATIONS
                and source in _FUSES_ACTIVATION)
    return True


def _layer_tail_bytes(graph: LayerGraph, layer: Layer, precision: str) -> float:
    """A layer's share of the TFLM tail: its ops, their outputs and constants, kernel data;
    and a resource variable's buffer (TFLM allocates it as persistent arena memory)."""
    ops = _tflite_ops(layer, _folds(graph, layer, 0))
    if not ops:
        return float(_variable_tail_bytes(layer))
    consts = 2 if layer.op.value in (*_WEIGHTED, "batch_norm") else int(
        layer.op.value in ("global_pool", "reshape"))
    size = TFLM_TENSOR_BYTES * (len(ops) + consts)
    for op in ops:
        size += TFLM_OP_BYTES + TFLM_OP_DATA_BYTES.get(op, TFLM_OP_DATA_BYTES["OTHER"])
    if layer.op.value in _PER_CHANNEL and precision == "int8":
        size += TFLM_PER_CHANNEL_BYTES * (layer.outputs[0].shape[-1] or 1)
    return size + _variable_tail_bytes(layer)


def _variable_tail_bytes(layer: Layer) -> int:
    """The persistent TFLM memory of a variable, counted at its first access (``state_bytes``):
    its buffer and the ops that open and initialise it."""
    return _aligned(layer.state_bytes) + TFLM_VARIABLE_BYTES if layer.state_bytes else 0


@dataclass(frozen=True, eq=False)
class TflmTail:
    """The TFLM tail of every stage, from prefix sums: ``bytes(first, stop)`` for the stage of
    positions ``first..stop-1``; ``matrix()`` for all of them at once (the solver's view).

    Folding is judged on the whole graph, and a stage's inputs and outputs are the tensors
    crossing its two cuts, so a stage costs the same however it is asked for.
    """

    layer_prefix: np.ndarray
    crossing: np.ndarray  # tensors crossing each cut position 0..n
    #: Variables first accessed before each position 0..n (a stage holding any pays the
    #: CALL_ONCE and init subgraph once).
    variable_prefix: np.ndarray | None = None

    @classmethod
    def of(cls, graph: LayerGraph, precision: str) -> TflmTail:
        shares = [_layer_tail_bytes(graph, layer, precision) for layer in graph]
        firsts = np.cumsum([0] + [int(layer.state_bytes > 0) for layer in graph])
        last_use = last_use_positions(graph)
        crossing = np.zeros(len(graph) + 1, dtype=np.int64)
        for position, layer in enumerate(graph):
            for tensor in layer.outputs:  # live across cuts position+1 .. last use
                crossing[position + 1:max(last_use.get(tensor.name, position), position) + 1] += 1
        crossing[0] = sum(1 for layer in graph if layer.op.value == "input")
        crossing[-1] = len(graph.outputs)
        return cls(np.concatenate(([0.0], np.cumsum(shares))), crossing, firsts)

    def bytes(self, first: int, stop: int) -> int:
        return int(self.matrix_entry(first, stop))

    def matrix_entry(self, first: int, stop: int) -> float:
        inputs, outputs = self.crossing[first], self.crossing[stop]
        stateful = (self.variable_prefix is not None
                    and self.variable_prefix[stop] > self.variable_prefix[first])
        return (TFLM_STAGE_BYTES + self.layer_prefix[stop] - self.layer_prefix[first]
                + TFLM_TENSOR_BYTES * inputs + TFLM_IO_BYTES * (inputs + outputs)
                + (TFLM_STATE_STAGE_BYTES if stateful else 0))

    def matrix(self) -> np.ndarray:
        """``[a, b]`` -> tail bytes of the stage ``a..b-1`` (meaningful for ``b > a``)."""
        layers = self.layer_prefix[None, :] - self.layer_prefix[:, None]
        inputs, outputs = self.crossing[:, None], self.crossing[None, :]
        tail = (TFLM_STAGE_BYTES + layers + TFLM_TENSOR_BYTES * inputs
                + TFLM_IO_BYTES * (inputs + outputs))
        if self.variable_prefix is not None:
            held = self.variable_prefix[None, :] - self.variable_prefix[:, None]
            tail = tail + TFLM_STATE_STAGE_BYTES * (held > 0)
        return tail.astype(np.int64)


def tflm_persistent_bytes(graph: LayerGraph, first: int, last: int, precision: str) -> int:
    """The TFLM tail of the stage of positions ``first..last``: per-stage, per-tensor, per-op
    and per-input/output structures and the kernels' persistent data."""
    return TflmTail.of(graph, precision).bytes(first, last + 1)


def tflm_arena_bytes(graph: LayerGraph, first: int, last: int, precision: str,
                     profile: ActivationProfile | None = None) -> int:
    """Predicted TFLM arena of the stage of positions ``first..last``: head + tail."""
    head = (profile or tflm_activations(graph, precision)).peak_bytes(first, last)
    return head + tflm_persistent_bytes(graph, first, last, precision)
