"""A charged tiled plan (``analyze --tiles --runtime-cost``) against the frame the runners
play: the oracle is :func:`hwsched.tiles.timing.frame_schedule` (each stage on its core
receiving, computing and sending one after another, the source's and sink's hops on the
root) over the stage graph ``export --tiles`` lays out for the plan (root stage, the run's
tiles, root stage, …), with the planner's own compute per stage and a link of no time, so
that every difference is the hand-off charge (the root's own tile is sent no bytes, as the
planner takes it: the root holds its input).

Failed before: the root's per-plan overhead carried two hops' four ends as well, which are
the model input's and output's hops that :func:`~hwsched.schedule.tiles.runner_io_ms` charges
(4 hop ends counted twice: a tiled candidate ranked later than the runner makes it); and a
tile on another board kept the root's ends of its hops on its own core's busy time (the
period), where the root already paid them, and the root's per-byte ends of the other tiles'
scatter and gather sat on the link, not on the root's core.
"""

from __future__ import annotations

import math

import pytest

from hwsched.costs.runtime import RuntimeCost
from hwsched.schedule.tiles import _busy, runner_io_ms
from hwsched.tiles.planning import TileBoard, TileCoster, TileLink, charge_runtime, plan_tiles
from hwsched.tiles.timing import frame_schedule
from tests.test_tiles_balance import _conv_stack

COST = RuntimeCost.asymmetric(sender=(0.3, 2e-4), receiver=(0.2, 1e-4))


def _played(graph, plan):
    """``(schedule, stage cores)`` of the plan's stage graph, one frame."""
    stages, edges, root_ms = [], [], 0.0
    for segment in plan.segments:
        if segment.tiled is None:
            root_ms += segment.latency_ms  # a root layer: its predicted time
            continue
        stages.append((0, root_ms))
        scatter = len(stages) - 1
        for k, tile in enumerate(segment.tiled.tiles):  # the root's own tile: no bytes sent
            stages.append((k, tile.compute_ms))
            edges.append((scatter, len(stages) - 1, tile.scatter_bytes))
        gather = len(stages)
        edges += [(scatter + 1 + k, gather, tile.gather_bytes)
                  for k, tile in enumerate(segment.tiled.tiles)]
        root_ms = 0.0
    stages.append((0, root_ms))
    inputs = {0: runner_io_bytes(graph)[0]}
    outputs = {len(stages) - 1: runner_io_bytes(graph)[1]}
    return frame_schedule(stages, edges, inputs, outputs, COST), stages, outputs


def runner_io_bytes(graph):
    from hwsched.schedule.handoff import model_io_bytes

    return model_io_bytes(graph)


def _core_busy(schedule, stages, outputs) -> dict[int, float]:
    """CPU ms per core of the frame played (a stage never idles once started), the sink's
    receiving end on the core of the stage that sends it the outputs."""
    busy: dict[int, float] = {}
    for (core, _), start, end in zip(stages, schedule.start_ms, schedule.end_ms, strict=True):
        busy[core] = busy.get(core, 0.0) + end - start
    for index, payload in outputs.items():
        busy[stages[index][0]] += COST.receiver_ms(payload)
    return busy


@pytest.mark.parametrize("speeds", [(1.0, 1.0), (1.0, 0.5), (0.6, 1.0), (1.0, 1.0, 1.0)])
def test_a_charged_plan_costs_what_the_runners_spend(speeds):
    graph = _conv_stack()
    boards = [TileBoard(f"b{k}", tuple(0.0 if p == 0 else 4.0 / s for p in range(4)))
              for k, s in enumerate(speeds)]
    boards, link = charge_runtime(boards, TileLink(math.inf, 0.0), COST)
    coster = TileCoster(graph, boards, link)
    plan = plan_tiles(coster, channels=False)
    assert plan.runs, "the plan tiles something"
    io_core_ms, io_wire_ms = runner_io_ms(graph, COST)
    planned = plan.latency_ms + io_core_ms + io_wire_ms
    schedule, stages, outputs = _played(graph, plan)
    # the root's ends of the other tiles' hops delay every tile's path in the frame played;
    # the planner charges their per-message part to the root's tile alone (its limit, at
    # most this much)
    slack = sum(COST.sender_ms(t.scatter_bytes) + COST.receiver_ms(t.gather_bytes)
                for run in plan.runs for t in run.tiles[1:])
    assert planned <= schedule.latency_ms + 1e-9
    assert schedule.latency_ms <= planned + slack + 1e-9
    busy, link_ms = _busy(coster, plan)
    busy[0] += io_core_ms
    played = _core_busy(schedule, stages, outputs)
    assert busy == pytest.approx([played.get(k, 0.0) for k in range(len(speeds))], rel=1e-12)
    assert link_ms == pytest.approx([0.0] * len(speeds), abs=1e-9)  # a link of no time
