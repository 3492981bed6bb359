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
    recorded weight bytes."""
    if layer.params:
        return layer.params * DTYPE_BYTES[PRECISION_DTYPES[precision]]
    return layer.weight_bytes


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
