"""Memory of one tile (or one output-channel part) on its board.

A tile stage holds the weights of every layer of its run and, while it runs, the regions of
the tensors it reads and makes. Its activations are swept like TFLite's arena planner sweeps a
whole model (:func:`hwsched.costs.memory.arena`), but over regions: each external input region
lives from the start until its last reader in the run, each layer's output region from its
layer until its last reader (the run's output until the end); the peak over the layers is the
tile's activation memory. Weights are counted whole (every tile of a run carries the run's
weights: what DeepThings' per-device memory figure counts too). An output-channel part holds
its slice of the layer's weights, the whole input and its slice of the output.

The verdict is :func:`hwsched.costs.memory.memory_fit`'s, so a tile is refused for the same
reason a chain stage would be.
"""

from __future__ import annotations

from dataclasses import dataclass

from hwsched.costs.memory import layer_weight_bytes, memory_fit
from hwsched.hardware import Platform
from hwsched.ir import LayerGraph
from hwsched.tiles.receptive import ChannelSlice, TilePlan, region_bytes


@dataclass(frozen=True)
class TileMemory:
    """A tile's (or part's) memory on a board and, when it does not fit, why."""

    weights_bytes: int
    peak_activation_bytes: int
    #: None when it fits the board.
    reason: str | None

    @property
    def memory_bytes(self) -> int:
        return self.weights_bytes + self.peak_activation_bytes


def tile_activation_bytes(graph: LayerGraph, plan: TilePlan) -> int:
    """Peak bytes of the tile's live regions over its layers (module docstring)."""
    order = {tile.layer: i for i, tile in enumerate(plan.layers)}
    last_reader: dict[str, int] = {}
    for i, tile in enumerate(plan.layers):
        for name in graph.layers[tile.position].inputs:
            last_reader[name] = i
    live = {name: region_bytes(graph, name, region) for name, region in plan.inputs}
    peak = sum(live.values())
    for i, tile in enumerate(plan.layers):
        live[tile.tensor] = region_bytes(graph, tile.tensor, tile.output)
        peak = max(peak, sum(live.values()))
        for name in list(live):
            if name != plan.run.output and last_reader.get(name, len(order)) <= i:
                del live[name]
    return peak


def run_weights_bytes(graph: LayerGraph, plan: TilePlan, precision: str) -> int:
    return sum(layer_weight_bytes(graph.layers[p], precision) for p in plan.run.positions)


def tile_memory(graph: LayerGraph, plan: TilePlan, platform: Platform,
                precision: str | None = None) -> TileMemory:
    """The tile's weights and peak activations on ``platform`` (in ``precision``, default the
    platform's own) and the reason it does not fit, if it does not."""
    weights = run_weights_bytes(graph, plan, precision or platform.default_precision)
    peak = tile_activation_bytes(graph, plan)
    return TileMemory(weights, peak, memory_fit(platform, weights, peak))


def part_memory(graph: LayerGraph, part: ChannelSlice, platform: Platform,
                precision: str | None = None) -> TileMemory:
    """An output-channel part: its slice of the layer's weights, the whole input and its slice
    of the output."""
    layer = graph.layer(part.layer)
    share = part.channels.size / layer.outputs[0].shape[-1]
    weights = round(layer_weight_bytes(layer, precision or platform.default_precision) * share)
    peak = part.input_bytes + part.output_bytes
    return TileMemory(weights, peak, memory_fit(platform, weights, peak))


__all__ = ["TileMemory", "part_memory", "tile_activation_bytes", "tile_memory"]
