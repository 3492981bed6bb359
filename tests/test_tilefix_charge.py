"""A tiled plan's latency and per-core work against the frame its exported stage graph plays
(issue 14): the oracle lays the plan out as ``export --tiles`` does
(:func:`hwsched.tiles.layout.runs_layout`: root stages, each run's tiles, the edges with their
regions), prices each stage from the layout alone (its board's invocation, and its layers'
shares of their predicted time by the regions the layout's tile plan computes), sizes each
edge from its regions and plays one frame with :func:`hwsched.tiles.timing.frame_schedule`,
with the runner's hand-off cost and a link of no time — so every difference is how the
planner charges the runner and the invocations.

Failed before: the root's own tile was charged no bytes although the scatter stage sends it
its region and it sends its strip to the gather stage; a tensor made before a run and read
after it (a residual block's input, sent from the scatter stage straight to the gather stage)
was not charged at all; the gather stage's invocation was in neither the latency nor the
root's busy time, nor the root tile's invocation in the busy time; and the other tiles'
paths missed the root's sends before theirs and its receipt of the other strips.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwsched.costs.runtime import RuntimeCost
from hwsched.ir import DTYPE_BYTES, LayerGraph, OpKind
from hwsched.schedule.tiles import _busy, runner_io_ms
from hwsched.tiles.layout import ChannelParts, runs_layout
from hwsched.tiles.planning import TileBoard, TileCoster, TileLink, charge_runtime, plan_tiles
from hwsched.tiles.timing import frame_schedule
from tests.test_tiles_planning import _Builder, graphs

COST = RuntimeCost.asymmetric(sender=(0.3, 2e-4), receiver=(0.2, 1e-4))
#: Per stage invocation on board k.
OVERHEAD_MS = (0.4, 0.25, 0.15)


# -- the oracle: the exported layout played -------------------------------------------------------
def exported_layout(graph: LayerGraph, plan):
    """The stage graph ``export --tiles`` writes for the plan's splits."""
    runs = []
    for segment in plan.segments:
        if segment.tiled is not None:
            runs.append((segment.start, segment.end,
                         tuple(t.region for t in segment.tiled.tiles)))
        elif segment.channels is not None:
            sizes = tuple(p.channels.size for p in segment.channels.parts)
            runs.append((segment.start, segment.end, ChannelParts(sizes)))
    return runs_layout(graph, runs)


def _edge_bytes(graph: LayerGraph, edge) -> int:
    total = 0
    for name, region in zip(edge.tensors, edge.regions, strict=True):
        shape = graph.tensor(name).shape
        if region is None:
            elements = math.prod(shape)
        elif isinstance(region, tuple):  # a channel slice: bounds over every axis
            elements = math.prod(stop - start for start, stop in region)
        else:
            elements = shape[0] * region.rows.size * region.cols.size * shape[3]
        total += elements * DTYPE_BYTES[graph.tensor(name).dtype]
    return total


def _stage_ms(graph: LayerGraph, boards, stage) -> float:
    """The stage's invocation and its layers' predicted time, by the regions it computes."""
    board = boards[stage.board]
    if stage.tile is not None:
        compute = 0.0
        for tile in stage.tile.layers:
            shape = graph.layers[tile.position].outputs[0].shape
            compute += board.layer_ms[tile.position] * tile.output.positions / (
                shape[1] * shape[2])
    elif stage.part is not None:
        (position,) = stage.positions
        channels = graph.layers[position].outputs[0].shape[-1]
        compute = board.layer_ms[position] * stage.part.channels.size / channels
    else:
        compute = sum(board.layer_ms[p] for p in stage.positions)
    return board.overhead_ms + compute


def played(graph: LayerGraph, boards, plan, cost: RuntimeCost = COST):
    """``(schedule, per-core work, layout)`` of one frame of the plan's exported stages, each
    board one core; the sink's receiving end on the core of the stage that sends it."""
    layout = exported_layout(graph, plan)
    stages = [(s.board, _stage_ms(graph, boards, s)) for s in layout.stages]
    edges = [(e.source, e.target, _edge_bytes(graph, e)) for e in layout.edges]
    in_bytes = sum(t.bytes for layer in graph.input_layers for t in layer.outputs)
    out_bytes = sum(graph.tensor(name).bytes for name in graph.outputs)
    last = len(stages) - 1
    schedule = frame_schedule(stages, edges, {0: in_bytes}, {last: out_bytes}, cost)
    work: dict[int, float] = {}
    for (core, _), start, end in zip(stages, schedule.start_ms, schedule.end_ms, strict=True):
        work[core] = work.get(core, 0.0) + end - start
    work[stages[last][0]] += cost.receiver_ms(out_bytes)
    return schedule, work, layout


def planned(graph: LayerGraph, boards, channels: bool, cost: RuntimeCost = COST):
    """``(plan, latency, per-core busy)`` as ``analyze --tiles --runtime-cost`` charges it."""
    charged, link = charge_runtime(boards, TileLink(math.inf, 0.0), cost)
    coster = TileCoster(graph, charged, link)
    plan = plan_tiles(coster, channels=channels)
    io_core_ms, io_wire_ms = runner_io_ms(graph, cost)
    busy, link_ms = _busy(coster, plan)
    busy[0] += io_core_ms
    assert link_ms == pytest.approx([0.0] * len(boards), abs=1e-9)  # a link of no time
    return plan, plan.latency_ms + io_core_ms + io_wire_ms, busy


def assert_plays_as_planned(graph: LayerGraph, boards, channels: bool = False):
    plan, latency_ms, busy = planned(graph, boards, channels)
    schedule, work, layout = played(graph, boards, plan)
    assert latency_ms == pytest.approx(schedule.latency_ms, rel=1e-9)
    assert busy == pytest.approx([work.get(k, 0.0) for k in range(len(boards))], rel=1e-9)
    return plan, layout


# -- models ---------------------------------------------------------------------------------------
def _boards(graph: LayerGraph, speeds, costs) -> list[TileBoard]:
    """Board ``k``: ``costs[name] = (root ms, other boards' ms)`` per layer, / its speed."""
    boards = []
    for k, speed in enumerate(speeds):
        layer_ms = tuple(0.0 if layer.op is OpKind.INPUT else costs[layer.name][min(k, 1)] / speed
                         for layer in graph.layers)
        boards.append(TileBoard(f"b{k}", layer_ms, OVERHEAD_MS[k]))
    return boards


def resnet_block() -> tuple[LayerGraph, dict[str, tuple[float, float]]]:
    """x → l1 conv → l2 conv → l3 conv → l4 = l1 + l3 → global pool → dense: the residual
    add reads the block's input, made before the run l2..l3 (ResNet-50's conv2_block2). The
    add, the first conv and the head are dear off the root, so the run is l2..l3 alone."""
    b = _Builder(12, 4, channels=2)
    b.window(OpKind.CONV2D, 3, 1, "same")
    block_input = b.last
    b.window(OpKind.CONV2D, 3, 1, "same")
    b.window(OpKind.CONV2D, 3, 1, "same")
    b.add(OpKind.ELEMENTWISE, (block_input.name, b.last.name), block_input.shape)
    graph = b.graph()
    costs = {"l1": (1.0, 500.0), "l2": (8.0, 8.0), "l3": (8.0, 8.0), "l4": (0.5, 500.0),
             "l5": (0.2, 500.0), "l6": (0.1, 500.0)}
    return graph, costs


def dense_head() -> tuple[LayerGraph, dict[str, tuple[float, float]]]:
    """x → conv → global pool → dense(64); both the pool and the dense layer are model
    outputs, so the pool's output goes from the split's scatter stage to its gather stage."""
    b = _Builder(6, 4, channels=2)
    b.window(OpKind.CONV2D, 3, 1, "same")
    pool = b.add(OpKind.GLOBAL_POOL, (b.last.name,), (1, 2))
    dense = b.add(OpKind.DENSE, (pool,), (1, 64))
    graph = LayerGraph("head", tuple(b.layers), outputs=(pool, dense))
    return graph, {"l1": (1.0, 500.0), "l2": (0.2, 500.0), "l3": (20.0, 20.0)}


def _root_to_root_bytes(graph: LayerGraph, layout) -> int:
    roots = {s.index for s in layout.stages if s.tile is None and s.part is None}
    return sum(_edge_bytes(graph, e) for e in layout.edges
               if e.source in roots and e.target in roots)


# -- the tests ------------------------------------------------------------------------------------
@pytest.mark.parametrize("speeds", [(1.0, 1.0), (1.0, 0.5), (0.7, 1.0), (1.0, 1.0, 1.0),
                                    (1.0, 0.5, 2.0)])
def test_a_run_with_a_bypass_costs_what_its_exported_stages_play(speeds):
    graph, costs = resnet_block()
    boards = _boards(graph, speeds, costs)
    plan, layout = assert_plays_as_planned(graph, boards)
    (run,) = plan.runs
    assert (run.run.start, run.run.end) == (2, 3)
    # the layout sends the block's input from the scatter stage straight to the gather stage
    assert _root_to_root_bytes(graph, layout) == graph.tensor("l1").bytes


@pytest.mark.parametrize("speeds", [(1.0, 1.0), (1.0, 0.6), (1.0, 1.0, 1.0)])
def test_an_output_channel_split_costs_what_its_exported_stages_play(speeds):
    graph, costs = dense_head()
    boards = _boards(graph, speeds, costs)
    plan, layout = assert_plays_as_planned(graph, boards, channels=True)
    assert [s.channels is not None for s in plan.segments].count(True) == 1
    assert _root_to_root_bytes(graph, layout) == graph.tensor("l2").bytes


def test_every_stage_on_the_root_is_one_invocation():
    """The runner free, only invocations and compute: per split the root invokes its own tile
    and the gather stage beside its first stage (one run over two boards: three), on the
    frame's path and on its core."""
    graph, costs = resnet_block()
    boards = _boards(graph, (1.0, 1.0), costs)
    free = RuntimeCost(frame_ms=0.0, per_byte_ms=0.0)
    coster = TileCoster(graph, boards, TileLink(math.inf, 0.0))
    plan = plan_tiles(coster, channels=False)
    schedule, work, layout = played(graph, boards, plan, free)
    assert plan.runs
    assert sum(1 for s in layout.stages if s.board == 0) == 1 + 2 * len(plan.runs)
    assert plan.latency_ms == pytest.approx(schedule.latency_ms, rel=1e-9)
    busy, _ = _busy(coster, plan)
    assert busy[0] == pytest.approx(work[0], rel=1e-9)


def _one_message_per_crossing(layout) -> bool:
    """Whether every tensor that crosses a run goes from its scatter stage to its gather stage
    and every tile reads from its own run's scatter stage: the plans whose paths are exact
    (:func:`hwsched.tiles.planning.run_paths_ms`; the others are bounded, not equal)."""
    scatter_of = {k: placed.scatter for placed in layout.runs for k in placed.tiles}
    pairs = {(placed.scatter, placed.gather) for placed in layout.runs}
    for edge in layout.edges:
        if edge.target in scatter_of and edge.source != scatter_of[edge.target]:
            return False
        if (edge.source not in scatter_of and edge.target not in scatter_of
                and (edge.source, edge.target) not in pairs):
            return False
    return True


@settings(max_examples=40, deadline=None)
@given(graph=graphs(max_layers=4), speeds=st.lists(st.floats(0.3, 3.0), min_size=2, max_size=3),
       channels=st.booleans())
def test_random_plans_cost_what_their_exported_stages_play(graph, speeds, channels):
    """Random conv/pool/residual stacks (a residual add after a run reads a tensor from
    before it), with a dense head that may be split by output channels."""
    boards = [TileBoard(f"b{k}", tuple(0.0 if layer.op is OpKind.INPUT
                                       else ((layer.flops or 0) * 1e-2 + 0.1) / speed
                                       for layer in graph.layers), OVERHEAD_MS[k])
              for k, speed in enumerate(speeds)]
    plan, latency_ms, busy = planned(graph, boards, channels)
    if not any(s.tiled is not None or s.channels is not None for s in plan.segments):
        return  # nothing split: the root alone, no stage graph to play
    schedule, work, layout = played(graph, boards, plan)
    if not _one_message_per_crossing(layout):
        return
    assert latency_ms == pytest.approx(schedule.latency_ms, rel=1e-9)
    assert busy == pytest.approx([work.get(k, 0.0) for k in range(len(boards))], rel=1e-9)
