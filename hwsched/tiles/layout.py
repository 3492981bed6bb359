"""The stage graph of tiled runs: per run a scatter stage, K tile stages and a gather stage.

``export --tiles START..END:K[:ROWSxCOLS]`` cuts the fused run ``START..END`` (layer names)
into K tiles of its output and lays the model out as stages (the issue's arrangement):

* stage 0, the *scatter*, on the first board: every layer before the run; it outputs the run's
  inputs whole, and each edge to a tile carries only that tile's input region (with its halo);
* stages 1..K, the *tiles*, tile ``k`` on board ``k``: the run's layers on the tile's own
  region (:func:`hwsched.tiles.receptive.tile_plan`), outputting its part of the run's output;
* stage K+1, the *gather*, on the first board: it stitches the tiles' parts (each edge carries
  one region of the run's output) and runs every layer after the run; tensors made before the
  run and read after it come straight from the scatter.

Several runs (``--tiles A..B:K,C..D:K``) chain: the root stage between two runs gathers the
first and scatters the second (:func:`runs_layout`). A run may also be one dense or conv
layer split by output channels (``L..L:K:cA/B``), its parts stitched along the channel axis.

Pure and TensorFlow-free: what it builds is what the exporter converts and what ``plan.json``
records (edges with regions, and a ``tiles`` entry per run).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from hwsched.errors import TilingError
from hwsched.ir import LayerGraph
from hwsched.tiles.receptive import (
    ChannelSlice,
    FusedRun,
    Region,
    Span,
    TilePlan,
    can_split_channels,
    channel_split,
    describe_run,
    fused_run,
    grid,
    tile_plan,
)

_TILES_OPTION = re.compile(r"^(?P<first>[^:]+)\.\.(?P<last>[^:]+):(?P<k>\d+)"
                           r"(?::(?P<rows>\d+)x(?P<cols>\d+)|:(?P<kind>[rc])(?P<sizes>\d+(?:/\d+)*))?$")


@dataclass(frozen=True)
class TilesOption:
    """``--tiles FIRST..LAST:K[:ROWSxCOLS]`` parsed (layer names; a grid, or K row strips)."""

    first_layer: str
    last_layer: str
    count: int
    grid_rows: int
    grid_cols: int
    #: Full-width strips of these many rows instead of an even grid (a planner's strips).
    row_sizes: tuple[int, ...] | None = None
    #: Instead of tiles: a dense or convolution layer (first = last) split into parts of these many
    #: output channels (AutoDiCE's output-channel split).
    channel_sizes: tuple[int, ...] | None = None


def parse_tiles_options(text: str) -> tuple[TilesOption, ...]:
    """``--tiles RUN[,RUN…]``: one or more runs, in layer order.

    >>> [o.first_layer for o in parse_tiles_options("a..b:2,c..d:2")]
    ['a', 'c']
    """
    return tuple(parse_tiles_option(item) for item in text.split(","))


def parse_tiles_option(text: str) -> TilesOption:
    """Parse one run of ``--tiles``; checked before the model loads.

    >>> option = parse_tiles_option("conv1..conv3:4:2x2")
    >>> option.count, option.grid_rows, option.grid_cols
    (4, 2, 2)
    >>> parse_tiles_option("conv1..conv3:2").grid_rows
    2
    >>> parse_tiles_option("conv1..conv3:2:r9/7").row_sizes
    (9, 7)
    >>> parse_tiles_option("fc1..fc1:2:c3000/1096").channel_sizes
    (3000, 1096)
    """
    match = _TILES_OPTION.match(text.strip())
    if match is None:
        raise TilingError(f"--tiles {text!r}: give FIRST_LAYER..LAST_LAYER:K, "
                          "FIRST_LAYER..LAST_LAYER:K:ROWSxCOLS or FIRST_LAYER..LAST_LAYER:K:rA/B/… "
                          "(strips of A, B, … rows; e.g. block1_conv1..block3_pool:2:r30/26), or "
                          "LAYER..LAYER:K:cA/B/… (a dense or conv layer split by output "
                          "channels)")
    count = int(match["k"])
    if match["sizes"]:
        sizes = tuple(int(n) for n in match["sizes"].split("/"))
        if count < 2 or len(sizes) != count or min(sizes) < 1:
            raise TilingError(f"--tiles {text!r}: K must be at least 2 and give K strip sizes "
                              "of at least one row")
        if match["kind"] == "c":
            if match["first"] != match["last"]:
                raise TilingError(f"--tiles {text!r}: an output-channel split is of one layer "
                                  "(LAYER..LAYER:K:cA/B/…)")
            return TilesOption(match["first"], match["last"], count, count, 1, None, sizes)
        return TilesOption(match["first"], match["last"], count, count, 1, sizes)
    rows, cols = (int(match["rows"]), int(match["cols"])) if match["rows"] else (count, 1)
    if count < 2 or rows * cols != count:
        raise TilingError(f"--tiles {text!r}: K must be at least 2 and equal ROWS x COLS "
                          f"({rows}x{cols} = {rows * cols})")
    return TilesOption(match["first"], match["last"], count, rows, cols)


@dataclass(frozen=True)
class TiledStage:
    """One stage of the tiled layout: its layer positions, input and output tensor names (what
    :class:`hwsched.export.graph.GraphStageSlice` holds), its board (0 = the root) and, for a
    tile, its plan."""

    index: int
    positions: tuple[int, ...]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    board: int = 0
    tile: TilePlan | None = None
    #: A part of an output-channel split (then ``tile`` is None).
    part: ChannelSlice | None = None


@dataclass(frozen=True)
class TiledEdge:
    """Tensors ``source`` sends ``target``; ``regions`` per tensor (None: whole)."""

    source: int
    target: int
    tensors: tuple[str, ...]
    regions: tuple[Region | None, ...]


@dataclass(frozen=True)
class RunStages:
    """Where one tiled run sits in the layout: its scatter (the root stage before it), its
    tile stages and its gather (the root stage after it)."""

    run: FusedRun
    scatter: int
    tiles: tuple[int, ...]
    gather: int


@dataclass(frozen=True)
class TiledLayout:
    stages: tuple[TiledStage, ...]
    edges: tuple[TiledEdge, ...]
    runs: tuple[RunStages, ...]

    def tiles_of(self, run: RunStages) -> tuple[TilePlan, ...]:
        """The tile plans of a row/grid run (empty for an output-channel split)."""
        return tuple(t for k in run.tiles if (t := self.stages[k].tile) is not None)

    def parts_of(self, run: RunStages) -> tuple[ChannelSlice, ...]:
        """The parts of an output-channel split (empty for a tiled run)."""
        return tuple(p for k in run.tiles if (p := self.stages[k].part) is not None)

    @property
    def run(self) -> FusedRun:
        """The first run (the only one of ``export --tiles A..B:K``)."""
        return self.runs[0].run

    @property
    def tiles(self) -> tuple[TilePlan, ...]:
        return self.tiles_of(self.runs[0])

    @property
    def gather(self) -> int:
        return self.runs[0].gather


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


def layout_for(graph: LayerGraph, options: Sequence[TilesOption]) -> TiledLayout:
    """The layout of the runs ``options`` name (layer names, tiles)."""
    runs: list[tuple[int, int, Any]] = []
    for option in options:
        start, end = run_positions(graph, option.first_layer, option.last_layer)
        if option.channel_sizes is not None:
            runs.append((start, end, ChannelParts(option.channel_sizes)))
            continue
        run = fused_run(graph, start, end)
        regions = output_regions(graph, run, option.grid_rows, option.grid_cols,
                                 option.row_sizes)
        runs.append((start, end, regions))
    return runs_layout(graph, runs)


@dataclass(frozen=True)
class ChannelParts:
    """Output-channel parts of one dense or convolution layer (part ``k`` on board ``k``)."""

    sizes: tuple[int, ...]


def tiled_layout(graph: LayerGraph, start: int, end: int,
                 regions: tuple[Region, ...]) -> TiledLayout:
    """The scatter / tiles / gather stages of one run ``start..end`` cut into ``regions`` of
    its output (see :func:`runs_layout`)."""
    return runs_layout(graph, [(start, end, regions)])


def runs_layout(graph: LayerGraph,
                runs: Sequence[tuple[int, int, tuple[Region, ...] | ChannelParts]]
                ) -> TiledLayout:
    """The stages of several tiled runs (in layer order, not overlapping): root stage 0 (the
    layers before the first run), the tiles of run 1 (tile ``k`` on board ``k``), root stage 1
    (run 1's gather: the layers up to run 2, possibly none, and run 2's scatter), …, the last
    root stage (every layer after the last run; it delivers the model outputs).

    Every tensor has a *home*, the root stage where it is made or, for a run's output,
    stitched; a tile receives its input regions from their homes, a root stage receives whole
    tensors from their homes and its run's output in pieces from the tiles. Raises
    :class:`~hwsched.errors.TilingError` naming the layer or tensor that prevents a run.
    """
    plans = _check_runs(graph, runs)
    stages: list[dict[str, Any]] = []
    bounds = [-1, *(p for s, e, _ in runs for p in (s, e)), len(graph.layers)]
    home: dict[str, int] = {}
    run_stages = []
    for j in range(len(runs) + 1):
        first, last = bounds[2 * j] + 1, bounds[2 * j + 1]
        root = len(stages)
        stages.append({"positions": tuple(range(first, last)), "board": 0, "tile": None,
                       "part": None})
        if j > 0:
            home[plans[j - 1][0].output] = root
            run_stages[-1] = replace(run_stages[-1], gather=root)
        for p in range(first, last):
            for tensor in graph.layers[p].outputs:
                home[tensor.name] = root
        if j < len(runs):
            run, tiles = plans[j]
            indices = tuple(range(len(stages), len(stages) + len(tiles)))
            for k, tile in enumerate(tiles):
                kind = "part" if isinstance(tile, ChannelSlice) else "tile"
                stages.append({"positions": tuple(run.positions), "board": k, "tile": None,
                               "part": None, kind: tile})
            run_stages.append(RunStages(run, root, indices, -1))
    return _wire(graph, stages, home, tuple(run_stages))


def _check_runs(graph: LayerGraph, runs) -> list[tuple[FusedRun, tuple[TilePlan, ...]]]:
    if not runs:
        raise TilingError("no run to tile")
    first_free = 1 + max(graph.position(layer.name) for layer in graph.input_layers)
    plans, previous_end = [], first_free - 1
    for start, end, regions in runs:
        if isinstance(regions, ChannelParts):
            run = _channel_run(graph, start, end, regions)
            parts = channel_split(graph, graph.layers[start].name, regions.sizes)
        else:
            run = fused_run(graph, start, end)
        if start <= previous_end:
            raise TilingError(f"run {graph.layers[start].name}..{graph.layers[end].name} "
                              "starts before the previous run ends (or at an input layer)")
        if not isinstance(regions, ChannelParts):
            parts = tuple(tile_plan(graph, run, region) for region in regions)
        plans.append((run, parts))
        previous_end = end
    return plans


def _channel_run(graph: LayerGraph, start: int, end: int, parts: ChannelParts) -> FusedRun:
    layer = graph.layers[start]
    if start != end or not can_split_channels(layer):
        raise TilingError(f"layer {layer.name!r} ({layer.op.value}) cannot be split by output "
                          "channels; only one dense layer or ungrouped convolution with a "
                          "channel-wise activation can")
    if len(layer.inputs) != 1:
        raise TilingError(f"layer {layer.name!r} has {len(layer.inputs)} inputs; a channel "
                          "split needs one")
    return describe_run(graph, start, end)


def channel_bounds(graph: LayerGraph, tensor: str, channels: Span) -> tuple[tuple[int, int], ...]:
    """A slice of the last axis as per-axis bounds over the whole tensor."""
    shape = graph.tensor(tensor).shape
    return (*((0, size) for size in shape[:-1]), (channels.start, channels.stop))


def _wire(graph: LayerGraph, stages: list[dict[str, Any]], home: dict[str, int],
          runs: tuple[RunStages, ...]) -> TiledLayout:
    """Inputs, outputs and edges of every stage from the homes of the tensors it needs."""
    flows: dict[tuple[int, int], dict[str, Region | None]] = {}
    needs: dict[int, list[str]] = {}
    for index, stage in enumerate(stages):
        if stage["tile"] is not None:
            for name, region in stage["tile"].inputs:
                flows.setdefault((home[name], index), {})[name] = region
            continue
        if stage["part"] is not None:
            for name in graph.layers[stage["positions"][0]].inputs:
                flows.setdefault((home[name], index), {})[name] = None
            continue
        wanted = [n for p in stage["positions"] for n in graph.layers[p].inputs]
        if index == len(stages) - 1:
            wanted += list(graph.outputs)
        for name in dict.fromkeys(wanted):
            if home[name] != index:
                flows.setdefault((home[name], index), {})[name] = None
        needs[index] = list(dict.fromkeys(wanted))
    for run in runs:
        out = run.run.output
        for k in run.tiles:
            part = stages[k]["part"]
            region = (stages[k]["tile"].output if part is None
                      else channel_bounds(graph, out, part.channels))
            flows.setdefault((k, run.gather), {})[out] = region
    order = {t: graph.position(graph.tensor(t).producer) for t in graph.tensors}
    edges = tuple(TiledEdge(a, b, tuple(names), tuple(names.values()))
                  for (a, b), names in sorted(flows.items()))
    model_inputs = _model_inputs(graph)
    result = []
    for index, stage in enumerate(stages):
        received = [t for e in edges if e.target == index for t in e.tensors]
        inputs = (model_inputs if index == 0 else ()) + tuple(
            sorted(dict.fromkeys(received), key=order.__getitem__))
        sent = [t for e in edges if e.source == index for t in e.tensors]
        outputs = tuple(sorted(dict.fromkeys(sent), key=order.__getitem__))
        if index == len(stages) - 1:
            outputs = tuple(graph.outputs)
        result.append(TiledStage(index, stage["positions"], inputs, outputs, stage["board"],
                                 stage["tile"], stage["part"]))
    return TiledLayout(tuple(result), edges, runs)


def _model_inputs(graph: LayerGraph) -> tuple[str, ...]:
    return tuple(t.name for layer in graph.input_layers for t in layer.outputs)


def nhwc_bounds(graph: LayerGraph, tensor: str, region: Region | None
                ) -> tuple[tuple[int, int], ...] | None:
    """A region as per-axis bounds over the whole NHWC tensor (batch and channels whole);
    bounds already over every axis (a channel slice) pass unchanged."""
    if region is None or isinstance(region, tuple):
        return region
    shape = graph.tensor(tensor).shape
    return ((0, shape[0]), (region.rows.start, region.rows.stop),
            (region.cols.start, region.cols.stop), (0, shape[3]))


def _span(span) -> list[int]:
    return [span.start, span.stop]


def halo(tiles: Sequence[TilePlan], index: int) -> dict[str, int]:
    """Input rows and columns tile ``index`` of a run shares with its neighbours (summed over
    the run's inputs): the overlap of its input regions with those of the tiles above/below it
    (rows) and beside it (columns) — what the scatter sends twice."""
    own = tiles[index]
    rows = cols = 0
    for k, other in enumerate(tiles):
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


def tiles_argument(graph: LayerGraph,
                   runs: Sequence[tuple[int, int, Sequence[int], str]]) -> str:
    """The ``--tiles`` value that exports runs ``(start, end, sizes, kind)``: ``kind`` "r"
    for strips of ``sizes`` rows, "c" for a split into ``sizes`` output channels.

    >>> from hwsched.ir import Layer, OpKind, Tensor
    >>> t = Tensor("x", "x", (1, 4, 4, 2), "float32")
    >>> g = LayerGraph("g", (Layer("x", OpKind.INPUT, (), (t,)),), outputs=("x",))
    >>> tiles_argument(g, [(0, 0, (3, 1), "r")])
    'x..x:2:r3/1'
    """
    return ",".join(
        f"{graph.layers[start].name}..{graph.layers[end].name}:{len(sizes)}:{kind}"
        + "/".join(str(r) for r in sizes)
        for start, end, sizes, kind in runs)


def tiles_records(graph: LayerGraph, layout: TiledLayout, boards: Sequence[str]
                  ) -> tuple[dict[str, Any], ...]:
    """The plan's ``tiles`` entries, one per run: its layers, its scatter and gather stages and
    every tile's stage, board, output region (``rows``, ``cols``), halo and input regions."""
    records = []
    for placed in layout.runs:
        tiles = layout.tiles_of(placed)
        if not tiles:
            records.append(_channels_record(graph, layout, placed, boards))
            continue
        records.append({
            **_run_record(graph, placed, "rows"),
            "tiles": [
                {"stage": stage, "board": boards[layout.stages[stage].board],
                 "rows": _span(tile.output.rows), "cols": _span(tile.output.cols),
                 "halo": halo(tiles, k),
                 "inputs": [{"tensor": name, "rows": _span(r.rows), "cols": _span(r.cols)}
                            for name, r in tile.inputs]}
                for k, (stage, tile) in enumerate(zip(placed.tiles, tiles, strict=True))
            ],
        })
    return tuple(records)


def _run_record(graph: LayerGraph, placed: RunStages, kind: str) -> dict[str, Any]:
    """What every run's record starts with: its kind, layers, tensors and scatter/gather."""
    run = placed.run
    return {"kind": kind, "first_layer": graph.layers[run.start].name,
            "last_layer": graph.layers[run.end].name, "start": run.start, "end": run.end,
            "output": run.output, "inputs": list(run.inputs),
            "scatter_stage": placed.scatter, "gather_stage": placed.gather}


def _channels_record(graph: LayerGraph, layout: TiledLayout, placed: RunStages,
                     boards: Sequence[str]) -> dict[str, Any]:
    return {
        **_run_record(graph, placed, "channels"),
        "parts": [{"stage": stage, "board": boards[layout.stages[stage].board],
                   "channels": _span(part.channels)}
                  for stage, part in zip(placed.tiles, layout.parts_of(placed), strict=True)],
    }
