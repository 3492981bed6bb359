"""The stage graph of one tiled run: a scatter stage, K tile stages and a gather stage.

``export --tiles START..END:K[:ROWSxCOLS]`` cuts the fused run ``START..END`` (layer names)
into K tiles of its output and lays the model out as stages (the issue's arrangement):

* stage 0, the *scatter*, on the first board: every layer before the run; it outputs the run's
  inputs whole, and each edge to a tile carries only that tile's input region (with its halo);
* stages 1..K, the *tiles*, tile ``k`` on board ``k``: the run's layers on the tile's own
  region (:func:`hwsched.tiles.receptive.tile_plan`), outputting its part of the run's output;
* stage K+1, the *gather*, on the first board: it stitches the tiles' parts (each edge carries
  one region of the run's output) and runs every layer after the run; tensors made before the
  run and read after it come straight from the scatter.

Pure and TensorFlow-free: what it builds is what the exporter converts and what ``plan.json``
records (edges with regions, and a ``tiles`` entry describing the run).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from hwsched.errors import TilingError
from hwsched.ir import LayerGraph, OpKind
from hwsched.tiles.receptive import FusedRun, Region, TilePlan, fused_run, grid, tile_plan

_TILES_OPTION = re.compile(r"^(?P<first>[^:]+)\.\.(?P<last>[^:]+):(?P<k>\d+)"
                           r"(?::(?P<rows>\d+)x(?P<cols>\d+))?$")


@dataclass(frozen=True)
class TilesOption:
    """``--tiles FIRST..LAST:K[:ROWSxCOLS]`` parsed (layer names; a grid, or K row strips)."""

    first_layer: str
    last_layer: str
    count: int
    grid_rows: int
    grid_cols: int


def parse_tiles_option(text: str) -> TilesOption:
    """Parse ``--tiles``; checked before the model loads.

    >>> parse_tiles_option("conv1..conv3:4:2x2")
    TilesOption(first_layer='conv1', last_layer='conv3', count=4, grid_rows=2, grid_cols=2)
    >>> parse_tiles_option("conv1..conv3:2").grid_rows
    2
    """
    match = _TILES_OPTION.match(text.strip())
    if match is None:
        raise TilingError(f"--tiles {text!r}: give FIRST_LAYER..LAST_LAYER:K or "
                          "FIRST_LAYER..LAST_LAYER:K:ROWSxCOLS (e.g. block1_conv1..block3_pool:2)")
    count = int(match["k"])
    rows, cols = (int(match["rows"]), int(match["cols"])) if match["rows"] else (count, 1)
    if count < 2 or rows * cols != count:
        raise TilingError(f"--tiles {text!r}: K must be at least 2 and equal ROWS x COLS "
                          f"({rows}x{cols} = {rows * cols})")
    return TilesOption(match["first"], match["last"], count, rows, cols)


@dataclass(frozen=True)
class TiledStage:
    """One stage of the tiled layout: its layer positions, input and output tensor names (what
    :class:`hwsched.export.graph.GraphStageSlice` holds) and, for a tile, its plan."""

    index: int
    positions: tuple[int, ...]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    tile: TilePlan | None = None


@dataclass(frozen=True)
class TiledEdge:
    """Tensors ``source`` sends ``target``; ``regions`` per tensor (None: whole)."""

    source: int
    target: int
    tensors: tuple[str, ...]
    regions: tuple[Region | None, ...]


@dataclass(frozen=True)
class TiledLayout:
    run: FusedRun
    stages: tuple[TiledStage, ...]
    edges: tuple[TiledEdge, ...]

    @property
    def tiles(self) -> tuple[TilePlan, ...]:
        return tuple(s.tile for s in self.stages if s.tile is not None)

    @property
    def gather(self) -> int:
        return len(self.stages) - 1


def run_positions(graph: LayerGraph, first_layer: str, last_layer: str) -> tuple[int, int]:
    """Positions of a run given by layer names (unknown names are one error line)."""
    for name in (first_layer, last_layer):
        if name not in {layer.name for layer in graph.layers}:
            raise TilingError(f"--tiles: model {graph.name!r} has no layer {name!r}")
    return graph.position(first_layer), graph.position(last_layer)


def output_regions(graph: LayerGraph, run: FusedRun, grid_rows: int, grid_cols: int,
                   row_sizes: tuple[int, ...] | None = None) -> tuple[Region, ...]:
    """The tiles of the run's output: an even ``grid_rows × grid_cols`` grid (row-major), or
    full-width strips of ``row_sizes`` rows (e.g. the planner's strips)."""
    shape = graph.tensor(run.output).shape
    if row_sizes is None:
        return grid(shape[1], shape[2], grid_rows, grid_cols)
    if sum(row_sizes) != shape[1] or min(row_sizes) < 1:
        raise TilingError(f"strips of {list(row_sizes)} rows do not cut the {shape[1]} rows of "
                          f"{run.output!r}")
    bounds = [sum(row_sizes[:k]) for k in range(1, len(row_sizes))]
    from hwsched.tiles.receptive import strips

    return strips(shape[1], shape[2], bounds)


def tiled_layout(graph: LayerGraph, start: int, end: int,
                 regions: tuple[Region, ...]) -> TiledLayout:
    """The scatter / tiles / gather stages of run ``start..end`` cut into ``regions`` of its
    output (see the module docstring); raises :class:`~hwsched.errors.TilingError` naming the
    layer or tensor that prevents it."""
    run = fused_run(graph, start, end)
    if end == len(graph.layers) - 1 or graph.tensor(run.output).name in graph.outputs:
        raise TilingError(f"run ending at layer {graph.layers[end].name!r} delivers a model "
                          "output; end the run before the last layer so the gather has work")
    if start == 0 or any(graph.layers[p].op is OpKind.INPUT for p in range(start, end + 1)):
        raise TilingError("a fused run starts after the model's input layers")
    tiles = tuple(tile_plan(graph, run, region) for region in regions)
    after = tuple(range(end + 1, len(graph.layers)))
    from_before = _read_after_run(graph, start, end)
    scatter = TiledStage(0, tuple(range(start)), _model_inputs(graph),
                         tuple(dict.fromkeys((*run.inputs, *from_before))))
    middle = tuple(
        TiledStage(k + 1, tuple(run.positions), run.inputs, (run.output,), tile)
        for k, tile in enumerate(tiles)
    )
    gather = TiledStage(len(tiles) + 1, after, (*from_before, run.output), tuple(graph.outputs))
    edges = [TiledEdge(0, k.index, run.inputs, tuple(dict(k.tile.inputs)[n] for n in run.inputs))
             for k in middle]
    if from_before:
        edges.append(TiledEdge(0, gather.index, from_before, (None,) * len(from_before)))
    edges += [TiledEdge(k.index, gather.index, (run.output,), (k.tile.output,)) for k in middle]
    return TiledLayout(run, (scatter, *middle, gather), tuple(edges))


def _model_inputs(graph: LayerGraph) -> tuple[str, ...]:
    return tuple(t.name for layer in graph.input_layers for t in layer.outputs)


def _read_after_run(graph: LayerGraph, start: int, end: int) -> tuple[str, ...]:
    """Tensors made before the run that a layer after it reads or that are model outputs."""
    names: dict[str, None] = {}
    for position in range(end + 1, len(graph.layers)):
        for name in graph.layers[position].inputs:
            if graph.position(graph.tensor(name).producer) < start:
                names.setdefault(name, None)
    for name in graph.outputs:
        if graph.position(graph.tensor(name).producer) < start:
            names.setdefault(name, None)
    return tuple(names)


def nhwc_bounds(graph: LayerGraph, tensor: str, region: Region | None
                ) -> tuple[tuple[int, int], ...] | None:
    """A region as per-axis bounds over the whole NHWC tensor (batch and channels whole)."""
    if region is None:
        return None
    shape = graph.tensor(tensor).shape
    return ((0, shape[0]), (region.rows.start, region.rows.stop),
            (region.cols.start, region.cols.stop), (0, shape[3]))


def _span(span) -> list[int]:
    return [span.start, span.stop]


def halo(layout: TiledLayout, index: int) -> dict[str, int]:
    """Input rows and columns tile ``index`` shares with its neighbours (summed over the run's
    inputs): the overlap of its input regions with those of the tiles above/below it (rows)
    and beside it (columns) — what the scatter sends twice."""
    own = layout.tiles[index]
    rows = cols = 0
    for k, other in enumerate(layout.tiles):
        if k == index:
            continue
        above_below = (_disjoint(own.output.rows, other.output.rows)
                       and not _disjoint(own.output.cols, other.output.cols))
        beside = (_disjoint(own.output.cols, other.output.cols)
                  and not _disjoint(own.output.rows, other.output.rows))
        theirs = dict(other.inputs)
        for name, region in own.inputs:
            if above_below:
                rows += _overlap(region.rows, theirs[name].rows)
            if beside:
                cols += _overlap(region.cols, theirs[name].cols)
    return {"rows": rows, "cols": cols}


def _disjoint(a, b) -> bool:
    return a.stop <= b.start or b.stop <= a.start


def _overlap(a, b) -> int:
    return max(0, min(a.stop, b.stop) - max(a.start, b.start))


def tiles_record(graph: LayerGraph, layout: TiledLayout, boards: tuple[str, ...]
                 ) -> dict[str, Any]:
    """The plan's ``tiles`` entry of the run: its layers, stages and every tile's regions."""
    run = layout.run
    return {
        "first_layer": graph.layers[run.start].name,
        "last_layer": graph.layers[run.end].name,
        "start": run.start,
        "end": run.end,
        "output": run.output,
        "inputs": list(run.inputs),
        "scatter_stage": 0,
        "gather_stage": layout.gather,
        "tiles": [
            {"stage": k + 1, "board": boards[k], "rows": _span(tile.output.rows),
             "cols": _span(tile.output.cols), "halo": halo(layout, k),
             "inputs": [{"tensor": name, "rows": _span(r.rows), "cols": _span(r.cols)}
                        for name, r in tile.inputs]}
            for k, tile in enumerate(layout.tiles)
        ],
    }
