"""Export fused-tile runs: per run a scatter stage, K tile stages and a gather stage, proven.

The steps, each a function below: lay the runs out (:mod:`hwsched.tiles.layout`); build the
root stages (scatter / gather) by replaying their layers (:mod:`hwsched.export.keras_stages`)
and each tile by re-instantiating the run's layers on the tile's own region
(:func:`build_tile_model`); convert every stage; record the plan (edges carrying regions, the
``tiles`` entries); then prove it twice over, in topological order with the regions applied as
the runner applies them: each run's stitched tile outputs equal the unsplit model's tensor at
the run's end, and the model outputs equal the whole model's.

A tile model runs each window layer with ``valid`` padding on its cropped input plus explicit
padding only where the receptive-field walk says the map's true border is (zeros for
convolutions; for max pooling the border rows mirrored, which leaves every window's maximum
unchanged; for average pooling a constant factor that divides border windows by their valid
elements, as TensorFlow does); pointwise layers (batch norm,
activations, residual adds, concatenations) are the original layer objects called again. The
weights are the original ones, copied into each clone.

A dense or convolution layer may instead be split by output channels: each part is the layer
re-instantiated with its slice of the kernel and bias, reading the whole input; the root stage
after it concatenates the parts (the same stitching, along the channel axis).

int8: the tiles of a run that is int8 throughout are quantized with the unsplit run's ranges
(:mod:`hwsched.export.tiles_int8`), and the proof also runs the unsplit int8 run on the same
input codes and records whether the stitched tile codes equal it (``int8_bit_exact``); tiles of
a run with mixed precisions are calibrated on their own crops.

What a tile costs (``bench/bench_tile_efficiency.py``, ResNet-50's runs against each run
exported whole, fp32, LiteRT with XNNPACK, one core): the tile's graph is the run's own — its
batch norms fold into the cloned convolutions, XNNPACK takes every op
(``tests/test_tiles_census.py``), and a border ``PAD`` costs nothing measurable beside the
convolution it feeds (a padded ``valid`` conv timed as the ``same`` one, by hand, not by the
bench); what it adds is a ``STRIDED_SLICE`` per crop (about 0.15 ms per 1.6 MB here, also
timed by hand). Back to back the 14 tiles of bench_tiles' two-board plan took 1.13-1.15× its
7 runs exported whole, for 1.09× the MACs (two runs). The rest is not in the graph: every tile
reads all of its run's weights (18-29 MB for 0.2-0.4 GMAC at 7×7: 1.23-1.31× with the caches
flushed, which :mod:`hwsched.tiles.planning` prices), each invocation after an idle pays for
waking (2.2-2.9 ms after 171 ms here: 14 invocations instead of 7), and two tiles computing
at once share the memory.

Limits: Keras models only (a ``.tflite`` model cannot be re-instantiated on other shapes);
average pooling at a border is not bit-exact in int8 (see ``tiles_int8``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from hwsched.deployment import EdgePlan, LinkPlan, Plan, StagePlan, TensorSource
from hwsched.errors import ExportError, VerificationError
from hwsched.export.graph import GraphStageSlice
from hwsched.handoff import _same_grid, handoff
from hwsched.ir import DTYPE_BYTES, LayerGraph, OpKind
from hwsched.progress import Progress, silent
from hwsched.tiles.layout import (
    TiledLayout,
    TiledStage,
    TilesOption,
    layout_for,
    nhwc_bounds,
    tiles_records,
)
from hwsched.tiles.receptive import WINDOW_OPS, LayerTile, PadMode, Region

#: The stitched run output may differ from the unsplit model's by this much, relative to the
#: largest magnitude of the reference tensor (fp32: the tiles sum the same products in another
#: order only where XNNPACK blocks them differently).
RUN_REL_TOL = 1e-5


# -- the tile model -------------------------------------------------------------------------------
def build_tile_model(binding: Any, graph: LayerGraph, stage: TiledStage,
                     names: Mapping[str, str]) -> Any:
    """The Keras model of one tile: the run's layers on the tile's regions, original weights."""
    from hwsched.load import import_keras

    keras = import_keras()
    plan = stage.tile
    assert plan is not None
    inputs = {}
    values: dict[str, tuple[Any, Region]] = {}
    for name, region in plan.inputs:
        tensor = graph.tensor(name)
        inputs[name] = keras.Input(batch_shape=region.shape(tensor.shape), dtype=tensor.dtype,
                                   name=names[name])
        values[name] = (inputs[name], region)
    for tile in plan.layers:
        layer = graph.layer(tile.layer)
        args = {n: _crop(keras, values[n], r) for n, r in zip(layer.inputs, tile.inputs,
                                                               strict=True)}
        values[tile.tensor] = (_tile_layer(keras, binding, graph, tile, args, stage.index),
                               tile.output)
    out = values[plan.run.output][0]
    return keras.Model(inputs=[inputs[n] for n in stage.inputs],
                       outputs={names[plan.run.output]: out},
                       name=f"{graph.name}_tile{stage.index}")


def build_part_model(binding: Any, graph: LayerGraph, stage: TiledStage,
                     names: Mapping[str, str]) -> Any:
    """The Keras model of one part of an output-channel split: the layer re-instantiated with
    only its channels ``[a, b)`` (kernel and bias sliced along their last axis, which is the
    output channels of both a dense and a convolution kernel), on the whole input."""
    from hwsched.load import import_keras

    keras = import_keras()
    part = stage.part
    assert part is not None
    layer = graph.layer(part.layer)
    (name,) = layer.inputs
    tensor = graph.tensor(name)
    x = keras.Input(batch_shape=tensor.shape, dtype=tensor.dtype, name=names[name])
    operation = binding.calls[layer.name].operation
    size = "units" if layer.op is OpKind.DENSE else "filters"
    clone = type(operation).from_config({**operation.get_config(), size: part.channels.size,
                                         "name": f"{operation.name}_c{stage.index}"})
    y = clone(x)
    a, b = part.channels.start, part.channels.stop
    clone.set_weights([w[..., a:b] for w in operation.get_weights()])
    return keras.Model(inputs=[x], outputs={names[layer.outputs[0].name]: y},
                       name=f"{graph.name}_part{stage.index}")


def _crop(keras: Any, held: tuple[Any, Region], region: Region) -> Any:
    """The part ``region`` of a value that holds ``held[1]``."""
    value, where = held
    top, left = region.rows.start - where.rows.start, region.cols.start - where.cols.start
    bottom, right = where.rows.stop - region.rows.stop, where.cols.stop - region.cols.stop
    if min(top, left, bottom, right) < 0:
        raise ExportError(f"tile region {region} is not inside the computed region {where}")
    if not any((top, left, bottom, right)):
        return value
    return keras.layers.Cropping2D(((top, bottom), (left, right)))(value)


def _tile_layer(keras: Any, binding: Any, graph: LayerGraph, tile: LayerTile,
                args: Mapping[str, Any], stage: int) -> Any:
    layer = graph.layer(tile.layer)
    if layer.op is OpKind.PAD:  # the zero padding itself, only where the tile meets a border
        return _pad(keras, args[layer.inputs[0]], tile, PadMode.ZERO)
    if layer.op not in WINDOW_OPS:
        from hwsched.export.keras_stages import _replay

        outputs = _replay(binding, layer.name, args)
        return outputs[0]
    operation = binding.calls[layer.name].operation
    x = _pad(keras, args[layer.inputs[0]], tile, tile.pad_mode)
    clone = type(operation).from_config(
        {**operation.get_config(), "padding": "valid", "name": f"{operation.name}_t{stage}"})
    y = clone(x)
    clone.set_weights(operation.get_weights())
    if tile.pad_mode is PadMode.EXCLUDE and tile.pad.any:
        y = keras.ops.multiply(y, _valid_share(tile, args[layer.inputs[0]], operation))
    return y


def _pad(keras: Any, x: Any, tile: LayerTile, mode: PadMode) -> Any:
    """Border padding as the full computation sees it. Max pooling ignores its padding: the
    border rows are mirrored instead of filled with ``-inf`` (which int8 cannot hold); a
    ``same`` window that reaches into the padding also holds the rows mirrored into it (its
    padding before is at most half the window), so its maximum is unchanged — the proof checks
    it."""
    p = tile.pad
    if not p.any:
        return x
    widths = ((0, 0), (p.top, p.bottom), (p.left, p.right), (0, 0))
    if mode is PadMode.MIN:
        return keras.ops.pad(x, widths, mode="symmetric")
    return keras.layers.ZeroPadding2D(widths[1:3])(x)


def _valid_share(tile: LayerTile, x: Any, pooling: Any) -> np.ndarray:
    """For average pooling over a zero-padded border: the factor ``window / valid elements``
    per output position (TensorFlow divides a border window by its valid elements only)."""
    p = tile.pad
    rows, cols = int(x.shape[1]), int(x.shape[2])
    ones = np.pad(np.ones((rows, cols)), ((p.top, p.bottom), (p.left, p.right)))
    pool_rows, pool_cols = _pair(pooling.pool_size)
    stride_rows, stride_cols = _pair(pooling.strides or pooling.pool_size)
    out_rows, out_cols = tile.output.rows.size, tile.output.cols.size
    share = np.empty((out_rows, out_cols))
    for i in range(out_rows):
        for j in range(out_cols):
            window = ones[i * stride_rows:i * stride_rows + pool_rows,
                          j * stride_cols:j * stride_cols + pool_cols]
            share[i, j] = window.size / window.sum()
    return share.reshape(1, out_rows, out_cols, 1).astype(np.float32)


def _pair(value: Any) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


# -- stages, records and the export ---------------------------------------------------------------
def _slice(stage: TiledStage) -> GraphStageSlice:
    return GraphStageSlice(stage.index, stage.positions, stage.inputs, stage.outputs)


def plan_edges(graph: LayerGraph, layout: TiledLayout) -> tuple[EdgePlan, ...]:
    edges = []
    for edge in layout.edges:
        regions = tuple(nhwc_bounds(graph, n, r)
                        for n, r in zip(edge.tensors, edge.regions, strict=True))
        edges.append(EdgePlan(edge.source, edge.target, edge.tensors,
                              regions if any(r is not None for r in regions) else ()))
    return tuple(edges)


def _records(graph: LayerGraph, layout: TiledLayout, files: Sequence[Any],
             names: Mapping[str, str], boards: Sequence[str], edges: Sequence[EdgePlan]
             ) -> tuple[StagePlan, ...]:
    from hwsched.export import api

    records = []
    for stage, item in zip(layout.stages, files, strict=True):
        record = api.stage_record(graph, item, names)
        sender = {}
        for edge in edges:  # a stitched input names the last tile as its source: the plan's
            if edge.to_stage == stage.index:  # hand-off check keys one step per tensor, the
                for name in edge.tensors:    # last edge's (each piece is handed off on its own)
                    sender[name] = edge.from_stage
        inputs = tuple(replace(spec, source=TensorSource(spec.name, sender.get(spec.name)))
                       for spec in record.inputs)
        records.append(replace(record, inputs=inputs, board=boards[stage.board],
                               cores=(stage.board,)))
    return tuple(records)


def _links(graph: LayerGraph, stages: Sequence[StagePlan], edges: Sequence[EdgePlan],
           link: str) -> tuple[LinkPlan, ...]:
    """One link record per edge; its bytes are those of the regions it carries."""
    links = []
    for edge in edges:
        produced = {spec.name: spec for spec in stages[edge.from_stage].outputs}
        wanted = {spec.name: spec for spec in stages[edge.to_stage].inputs}
        size = 0
        for name in edge.tensors:
            bounds = edge.region(name)
            shape = graph.tensor(name).shape if bounds is None else [b - a for a, b in bounds]
            size += int(np.prod(shape)) * DTYPE_BYTES[produced[name].dtype]
        links.append(LinkPlan(edge.from_stage, edge.to_stage, link, edge.tensors, size,
                              tuple(handoff(produced[t], wanted[t]) for t in edge.tensors)))
    return tuple(links)


def export_tiles(
    model: Any,
    options: Sequence[TilesOption],
    platforms: Sequence[str],
    out_dir: Path,
    *,
    link: str,
    precisions: Sequence[str] | str | None = None,
    calibration: str | None = None,
    calibration_samples: int = 100,
    samples: int = 32,
    weights: str | None = None,
    prediction: Mapping[str, Any] | None = None,
    progress: Progress | None = None,
    force: bool = False,
) -> Plan:
    """Export the tiled runs ``options`` of ``model`` over ``platforms``: tile ``k`` of every
    run on board ``k``, every other layer on board 0. A tile or part over its board's memory
    (:func:`check_tile_memory`) is an error unless ``force``, checked before any conversion."""
    from hwsched.export import api
    from hwsched.export.data import default_source, model_input_samples, parse_source
    from hwsched.export.litert import read_signature
    from hwsched.export.stages import signature_names
    from hwsched.hardware import load_platform
    from hwsched.load import LoadedModel, load_model
    from hwsched.schedule.context import board_labels

    report = progress or silent
    check_board_count(options, platforms)
    loaded = model if isinstance(model, LoadedModel) else load_model(model, weights, report)
    if loaded.kind != "keras":
        raise ExportError(f"{loaded.source}: --tiles rebuilds the run's layers on each tile's "
                          "shape, which needs the Keras model (not a .tflite file)")
    graph = loaded.graph
    layout = layout_for(graph, options)
    described = [load_platform(p) for p in platforms]  # a descriptor file is named by its name
    boards = board_labels([p.name for p in described])
    stage_platforms = tuple(described[s.board].name for s in layout.stages)
    chosen = api.stage_precisions(loaded, [described[s.board] for s in layout.stages],
                                  precisions)
    if not force:
        check_tile_memory(graph, layout, [described[s.board] for s in layout.stages], chosen)
    source = parse_source(calibration) if calibration else default_source(graph)
    names = signature_names(list(graph.tensors))
    stage_bytes, run_int8 = _build(loaded, layout, chosen, names, source, calibration_samples,
                                   report)
    files = [api.StageFiles(_slice(s), p, c, data, read_signature(data, f"stage {s.index}"))
             for s, p, c, data in zip(layout.stages, stage_platforms, chosen, stage_bytes,
                                      strict=True)]
    edges = plan_edges(graph, layout)
    stages = _records(graph, layout, files, names, boards, edges)
    links = _links(graph, stages, edges, link)
    verify_inputs = model_input_samples(graph, source, samples, calibration=False)
    report(f"verifying the tiled runs on {len(verify_inputs)} samples")
    records = tuple(
        {**record, "verification": check}
        for record, check in zip(tiles_records(graph, layout, boards), _verify_runs(
            loaded, layout, stages, links, edges, stage_bytes, verify_inputs, run_int8),
            strict=True))
    verification, reference_outputs = _verify_outputs(loaded, stages, links, edges, stage_bytes,
                                                      verify_inputs)
    if prediction is None:
        board_precisions = [next((c for st, c in zip(layout.stages, chosen, strict=True)
                                  if st.board == k), None) for k in range(len(platforms))]
        prediction = predict_layout(graph, layout, stage_platforms, platforms, link,
                                    board_precisions)
    plan = Plan(model=graph.name, stages=stages, links=links, verification=verification,
                source=loaded.source, prediction=dict(prediction), edges=edges, tiles=records)
    report(f"writing {out_dir}")
    return api._write(out_dir, plan, stage_bytes, False, verify_inputs, reference_outputs)


def predict_layout(graph: LayerGraph, layout: TiledLayout, stage_platforms: Sequence[str],
                   platforms: Sequence[str], link: str,
                   precisions: Sequence[str | None] | None = None) -> dict[str, Any]:
    """The tile planner's single-frame prediction of the exported layout (roofline per layer,
    the link's framed transfer model): each root stage its layers, each tile or channel part
    its share with its scatter and gather transfers, the latency the root's stages (each one
    invocation of the root board and its layers: the scatter and the gather of every run
    are stages of their own, as the planner charges them) plus each run's slowest tile. A
    grid's cells are priced by the strips' rule
    (:meth:`~hwsched.tiles.planning.TileCoster.tile_region`)."""
    from hwsched.hardware import load_link, load_platform
    from hwsched.tiles.planning import TileCoster, boards_from_platforms, link_from_descriptor
    from hwsched.tiles.summary import WEIGHTS_CHARGED

    # each board in the precision of its first stage (None: its default), so an int8 export
    # is priced on int8 compute and int8 weight bytes; a board whose stages were exported in
    # two precisions is priced in one of them
    described = [load_platform(p) for p in platforms]
    boards = tuple(
        replace(boards_from_platforms(graph, [platform], precision)[0],
                name=f"{k}:{platform.name}")
        for k, (platform, precision) in enumerate(zip(
            described, precisions or [None] * len(described), strict=True)))
    coster = TileCoster(graph, boards, link_from_descriptor(load_link(link)))
    stage_ms: dict[int, float] = {}
    latency_ms = 0.0
    for stage in layout.stages:
        if stage.tile is None and stage.part is None:
            stage_ms[stage.index] = boards[0].overhead_ms + sum(
                boards[0].layer_ms[p] for p in stage.positions)
            latency_ms += stage_ms[stage.index]
    for placed in layout.runs:
        peers = len(placed.tiles) - 1
        for k, index in enumerate(placed.tiles):
            stage = layout.stages[index]
            if stage.part is not None:
                stage_ms[index] = coster.channel_part_ms(placed.run.start, k, stage.part.channels,
                                                         peers)
                continue
            stage_ms[index] = coster.tile_region(placed.run, k, stage.tile.output,
                                                 peers).latency_ms
        latency_ms += max(stage_ms[k] for k in placed.tiles)
    return {"placement": "tiles", "latency_model": "roofline", "weights_charged": WEIGHTS_CHARGED,
            "link": link,
            "latency_ms": latency_ms,
            "stages": [{"board": stage_platforms[s.index], "latency_ms": stage_ms[s.index]}
                       for s in layout.stages]}


def check_tile_memory(graph: LayerGraph, layout: TiledLayout, stage_platforms: Sequence[Any],
                      precisions: Sequence[str]) -> None:
    """Every tile's region activations and its run's weights (a part's weight slice, whole
    input and output slice) must fit its board (:mod:`hwsched.tiles.memory`); the first that
    does not is an error naming the stage, its layers and the fix."""
    from hwsched.hardware import load_platform
    from hwsched.tiles.memory import part_memory, tile_memory

    for stage in layout.stages:
        if stage.tile is None and stage.part is None:
            continue
        platform = load_platform(stage_platforms[stage.index])  # a name, file or Platform
        precision = precisions[stage.index]
        memory = (tile_memory(graph, stage.tile, platform, precision) if stage.tile is not None
                  else part_memory(graph, stage.part, platform, precision))
        if memory.reason is not None:
            first, last = (graph.layers[p].name for p in (stage.positions[0],
                                                          stage.positions[-1]))
            raise ExportError(f"--tiles: stage {stage.index} ({first}..{last} on "
                              f"{platform.name}): {memory.reason}; pass --force to export "
                              "anyway")


def check_board_count(options: Sequence[TilesOption], platforms: Sequence[str]) -> None:
    """One board per tile: the most tiles any run has (cheap; before the model loads)."""
    most = max(option.count for option in options)
    if len(platforms) != most:
        raise ExportError(f"--tiles asks for {most} tiles: give {most} --platforms (one per "
                          f"tile), got {len(platforms)}")


def _build(loaded: Any, layout: TiledLayout, precisions: Sequence[str], names: Mapping[str, str],
           source: Any, calibration_samples: int, report: Progress
           ) -> tuple[list[bytes], dict[int, bytes]]:
    """Every stage's flatbuffer, and for each run whose tiles are all int8 the unsplit run's
    int8 model (keyed by the run's position in ``layout.runs``) that they share ranges with."""
    from hwsched.export.convert import convert_stage
    from hwsched.export.data import model_input_samples
    from hwsched.export.keras_stages import build_keras_stage

    binding, graph = loaded.keras, loaded.graph
    report("building the scatter, tile and gather models")
    models = [build_tile_model(binding, graph, s, names) if s.tile is not None
              else build_part_model(binding, graph, s, names) if s.part is not None
              else build_keras_stage(binding, graph, _slice(s), names) for s in layout.stages]
    arrivals: dict[int, list[dict[str, np.ndarray]]] = {s.index: [] for s in layout.stages}
    wholes: list[dict[tuple[int, str], np.ndarray]] = []
    if "int8" in precisions:
        calibration = model_input_samples(graph, source, calibration_samples, True)
        report(f"running {len(calibration)} calibration samples through the float stages")
        for sample in calibration:
            feeds, produced = _float_feeds(graph, layout, models, names, sample)
            for index, stage_feeds in feeds.items():
                arrivals[index].append(stage_feeds)
            wholes.append(produced)
    shared = _shared_int8(binding, graph, layout, precisions, names, models, arrivals, wholes,
                          report)
    result = []
    for stage, precision, keras_model in zip(layout.stages, precisions, models, strict=True):
        if stage.index in shared.tiles:
            result.append(shared.tiles[stage.index])
            continue
        report(f"converting stage {stage.index} to {precision}")
        result.append(convert_stage(keras_model, precision, arrivals[stage.index],
                                    label=f"stage {stage.index}"))
    return result, shared.runs


@dataclass(frozen=True)
class _Shared:
    tiles: dict[int, bytes]
    runs: dict[int, bytes]


def _shared_int8(binding: Any, graph: LayerGraph, layout: TiledLayout,
                 precisions: Sequence[str], names: Mapping[str, str], models: Sequence[Any],
                 arrivals: Mapping[int, list], wholes: Sequence[Mapping], report: Progress
                 ) -> _Shared:
    """Tiles of runs that are int8 throughout, quantized with their unsplit run's ranges
    (:mod:`hwsched.export.tiles_int8`)."""
    from hwsched.export.keras_stages import build_keras_stage
    from hwsched.export.tiles_int8 import shared_int8

    tiles: dict[int, bytes] = {}
    runs: dict[int, bytes] = {}
    for number, placed in enumerate(layout.runs):
        if not layout.tiles_of(placed) or any(precisions[k] != "int8" for k in placed.tiles):
            continue
        run = placed.run
        report(f"quantizing the tiles of {run.output!r} with the unsplit run's ranges")
        whole = build_keras_stage(binding, graph, GraphStageSlice(
            -1, tuple(run.positions), run.inputs, (run.output,)), names)
        homes = {n: e.source for e in layout.edges if e.target == placed.tiles[0]
                 for n in e.tensors}
        samples = [{names[n]: produced[(homes[n], n)] for n in run.inputs} for produced in wholes]
        runs[number], parts = shared_int8(
            whole, samples, [(models[k], arrivals[k], f"stage {k}") for k in placed.tiles])
        tiles.update(zip(placed.tiles, parts, strict=True))
    return _Shared(tiles, runs)


def _float_feeds(graph: LayerGraph, layout: TiledLayout, models: Sequence[Any],
                 names: Mapping[str, str], sample: Mapping[str, np.ndarray]
                 ) -> tuple[dict[int, dict[str, np.ndarray]], dict[tuple[int, str], np.ndarray]]:
    """Every stage's float inputs for one sample (keyed by signature name), the regions applied
    as the runner applies them: what an int8 stage is calibrated on; and every stage output."""
    from hwsched.tiles.regions_np import incoming, outgoing

    edges = plan_edges(graph, layout)
    produced: dict[tuple[int, str], np.ndarray] = {}
    feeds_by_stage: dict[int, dict[str, np.ndarray]] = {}
    for stage, keras_model in zip(layout.stages, models, strict=True):
        feeds = {}
        for name in stage.inputs:
            if stage.index == 0:
                feeds[names[name]] = np.asarray(sample[name], dtype=np.float32)
                continue
            pieces = [(e.region(name), outgoing(produced[(e.from_stage, name)], e.region(name)))
                      for e in edges if e.to_stage == stage.index and name in e.tensors]
            shape = graph.tensor(name).shape
            if stage.tile is not None:  # a tile reads its region of the tensor
                shape = dict(stage.tile.inputs)[name].shape(shape)
            feeds[names[name]] = incoming(tuple(shape), pieces, f"stage {stage.index}")
        feeds_by_stage[stage.index] = feeds
        outputs = keras_model([feeds[names[n]] for n in stage.inputs], training=False)
        for name in stage.outputs:
            produced[(stage.index, name)] = np.asarray(outputs[names[name]])
    return feeds_by_stage, produced


# -- the proof ------------------------------------------------------------------------------------
def _verify_runs(loaded: Any, layout: TiledLayout, stages: Sequence[StagePlan],
                 links: Sequence[LinkPlan], edges: Sequence[EdgePlan],
                 stage_bytes: Sequence[bytes], samples: Sequence[Any],
                 run_int8: Mapping[int, bytes]) -> list[dict[str, Any]]:
    """Per run: its stitched tile outputs (as its gather receives them, in float) against the
    unsplit Keras model's tensor at the run's end; for int8 tiles sharing the unsplit run's
    ranges also the stitched int8 codes against the unsplit int8 run's on the same input."""
    from hwsched.export.graph import load_graph_chain
    from hwsched.export.keras_stages import build_keras_stage
    from hwsched.export.stages import signature_names
    from hwsched.handoff import to_float

    graph = loaded.graph
    names = signature_names(list(graph.tensors))
    model_inputs = layout.stages[0].inputs
    heads = [build_keras_stage(loaded.keras, graph, GraphStageSlice(
        -1, tuple(range(placed.run.end + 1)), model_inputs, (placed.run.output,)), names)
        for placed in layout.runs]
    chain = load_graph_chain(stages, links, stage_bytes, edges)
    specs = {placed.gather: next(s for s in stages[placed.gather].inputs
                                 if s.name == placed.run.output) for placed in layout.runs}
    diffs: list[list[tuple[float, float, bool]]] = [[] for _ in layout.runs]
    steps: dict[int, list[int | None]] = {k: [] for k in run_int8}
    int8_checks = {k: _Int8Run(loaded, layout, layout.runs[k], run_int8[k], stage_bytes, names)
                   for k in run_int8}
    for sample in samples:
        got: dict[int, np.ndarray] = {}

        def tap(index: int, received: Mapping[str, np.ndarray], got=got) -> None:
            if index in specs:
                got[index] = to_float(received[specs[index].name], specs[index])
        chain(sample, tap=tap)
        for k, check in int8_checks.items():
            steps[k].append(check.steps(sample))
        for k, (placed, head) in enumerate(zip(layout.runs, heads, strict=True)):
            want = np.asarray(head([sample[n] for n in model_inputs], training=False)[
                names[placed.run.output]], dtype=np.float32)
            diff = float(np.max(np.abs(got[placed.gather] - want)))
            diffs[k].append((diff, diff / max(float(np.max(np.abs(want))), 1e-30),
                             bool(np.array_equal(got[placed.gather], want))))
    floats = all(s.precision == "fp32" for s in stages)
    verdicts = [_run_verdict(placed.run.output, found, floats)
                for placed, found in zip(layout.runs, diffs, strict=True)]
    for k, found in steps.items():
        same_grid = all(n is not None for n in found)
        verdicts[k]["int8_reference"] = "unsplit int8 run, same input codes"
        verdicts[k]["int8_max_steps"] = max(found) if same_grid else None
        verdicts[k]["int8_bit_exact"] = same_grid and max(found) == 0
    return verdicts


class _Int8Run:
    """The unsplit int8 run and the run's int8 tiles fed the same input codes (the float run
    inputs quantized on the tiles' input grid, which is the unsplit run's): the tiles' outputs
    stitched by their regions against the unsplit run's output codes."""

    def __init__(self, loaded: Any, layout: TiledLayout, placed: Any, data: bytes,
                 stage_bytes: Sequence[bytes], names: Mapping[str, str]) -> None:
        from hwsched.export.keras_stages import build_keras_stage
        from hwsched.export.litert import StageProgram, read_signature

        graph, run = loaded.graph, placed.run
        self.names, self.run = names, run
        self.model_inputs = layout.stages[0].inputs
        self.head = build_keras_stage(loaded.keras, graph, GraphStageSlice(
            -1, tuple(range(run.start)), self.model_inputs, run.inputs), names)
        self.program = StageProgram(data, label=f"unsplit int8 run {run.output!r}")
        io = read_signature(data, "unsplit int8 run")
        self.inputs = {spec.name: spec for spec in io.inputs}
        (self.output,) = io.outputs
        self.tiles = [(StageProgram(stage_bytes[k], label=f"stage {k}"), layout.stages[k].tile)
                      for k in placed.tiles]
        self.tile_grid = read_signature(stage_bytes[placed.tiles[0]], "tile").outputs[0]

    def steps(self, sample: Mapping[str, np.ndarray]) -> int | None:
        """Largest difference in int8 codes, None when the grids differ."""
        from hwsched.handoff import from_float

        floats = self.head([sample[n] for n in self.model_inputs], training=False)
        codes = {self.names[n]: from_float(np.asarray(floats[self.names[n]]),
                                           self.inputs[self.names[n]]) for n in self.run.inputs}
        want = next(iter(self.program(codes).values()))
        ours, theirs = self.tile_grid.quantization, self.output.quantization
        if ours is None or theirs is None or not _same_grid(ours, theirs):
            return None
        stitched = np.zeros_like(want)
        for program, tile in self.tiles:
            feeds = {self.names[n]: _cut(codes[self.names[n]], r) for n, r in tile.inputs}
            out = tile.output
            stitched[:, out.rows.start:out.rows.stop, out.cols.start:out.cols.stop] = next(
                iter(program(feeds).values()))
        return int(np.max(np.abs(stitched.astype(np.int32) - want.astype(np.int32))))


def _cut(array: np.ndarray, region: Region) -> np.ndarray:
    return array[:, region.rows.start:region.rows.stop, region.cols.start:region.cols.stop]


def _run_verdict(tensor: str, diffs: Sequence[tuple[float, float, bool]], floats: bool
                 ) -> dict[str, Any]:
    worst_rel = max(d[1] for d in diffs)
    passed = worst_rel <= RUN_REL_TOL if floats else True
    if not passed:
        raise VerificationError(
            f"tiled run ending at {tensor!r}: the stitched tiles differ from the unsplit model "
            f"by {worst_rel:.3g} (relative to its largest value; tolerance {RUN_REL_TOL})")
    return {"tensor": tensor, "samples": len(diffs), "max_abs_diff": max(d[0] for d in diffs),
            "max_rel_diff": worst_rel, "bit_exact": all(d[2] for d in diffs),
            "rel_tolerance": RUN_REL_TOL, "passed": passed}


def _verify_outputs(loaded: Any, stages: Sequence[StagePlan], links: Sequence[LinkPlan],
                    edges: Sequence[EdgePlan], stage_bytes: Sequence[bytes],
                    samples: Sequence[Any]) -> tuple[Any, dict]:
    from hwsched.export.graph import load_graph_chain
    from hwsched.export.reference import reference_for
    from hwsched.export.verify import compare, require_passed

    chain = load_graph_chain(stages, links, stage_bytes, edges)
    reference, label, exact_possible = reference_for(loaded)
    exact = exact_possible or all(s.precision == "fp32" for s in stages)
    verification, outputs = compare(chain, reference, samples, label, exact)
    require_passed(verification)
    return verification, outputs


__all__ = ["build_part_model", "build_tile_model", "export_tiles", "plan_edges"]
