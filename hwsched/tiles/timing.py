"""Single-frame latency of an exported stage-graph plan (fused tiles) from timed stages.

The planner prices a tile by per-layer shares (:mod:`hwsched.tiles.planning`); once the plan
is exported, its stages can be timed whole on the boards, and this module turns those times
and the runner's measured hand-off cost (:class:`hwsched.costs.runtime.RuntimeCost`) into the
latency of one frame, as the runners spend it:

* every stage, in topological order (the plan's stage order), starts when its core is free and
  every message it waits for has arrived; on its core it then receives each incoming message
  (``receiver_ms``), computes (its timed ms) and sends each outgoing message in edge order
  (``sender_ms``); a message arrives ``wire_ms`` after its sender finished sending it;
* the source hands the model inputs to the stages that read them (its sending end on the
  receiving stage's core, as ``emulate`` pins it), the sink receives the model outputs on the
  core of the stage that makes them;
* stages on one core never overlap (a root board runs its scatter, its own tile and its
  gather one after the other), as the planner's paths through a run take them
  (:func:`hwsched.tiles.planning.run_paths_ms`);
* given a ``same_core_runtime`` (the hand-off measured with both ends on one core), a hop
  whose two ends share one CPU takes its wire part instead, as
  :class:`hwsched.costs.placement.PlacementCoster` prices it: an edge between two stages on
  one core, the source's hop into a stage on stage 0's core and the sink's from a stage on
  the last stage's (``emulate`` pins the source and the sink there). There the two ends take
  turns on the core instead of overlapping on two.

Pure and TensorFlow-free (the runner side may use it).

>>> from hwsched.costs.runtime import RuntimeCost
>>> hop = RuntimeCost(frame_ms=0.5, per_byte_ms=0.0)
>>> frame_latency_ms([(0, 10.0), (1, 20.0)], [(0, 1, 0)], {0: 0}, {1: 0}, hop)  # 4 hop ends
33.0
"""

from __future__ import annotations

import math
from collections.abc import Collection, Hashable, Mapping, Sequence
from dataclasses import dataclass

from hwsched.costs.runtime import RuntimeCost
from hwsched.deployment import Plan
from hwsched.ir import DTYPE_BYTES

#: ``(core, compute ms)`` per stage, in topological order; the core is any key naming what
#: the stage computes on (stages of one key never overlap).
StageTimes = Sequence[tuple[Hashable, float]]
#: ``(from stage, to stage, bytes)`` per edge.
Edges = Sequence[tuple[int, int, int]]


@dataclass(frozen=True)
class FrameSchedule:
    """One frame as :func:`frame_schedule` plays it: when each stage's core work starts and
    ends, when each edge's message has arrived, and the frame's latency (all ms from the
    source's send)."""

    start_ms: tuple[float, ...]
    end_ms: tuple[float, ...]
    arrival_ms: tuple[float, ...]
    latency_ms: float


def frame_schedule(stages: StageTimes, edges: Edges, inputs: Mapping[int, int],
                   outputs: Mapping[int, int], runtime: RuntimeCost, *,
                   same_core_runtime: RuntimeCost | None = None,
                   single_cpu: Collection[Hashable] | None = None) -> FrameSchedule:
    """One frame played stage by stage (module docstring). ``inputs``/``outputs``: bytes of
    model inputs each stage receives from the source and of model outputs it sends the
    sink; ``single_cpu``: the core keys that name one CPU (default: every key), the only ones
    whose hops ``same_core_runtime`` prices (two stages sharing a set of several CPUs run at
    once).

    >>> hop = RuntimeCost.asymmetric(sender=(0.0, 0.0), receiver=(0.0, 0.0), wire=(1.0, 0.0))
    >>> one_core = RuntimeCost.asymmetric(sender=(0.0, 0.0), receiver=(0.0, 0.0),
    ...                                   wire=(3.0, 0.0))
    >>> frame_schedule([("c0", 10.0), ("c0", 20.0)], [(0, 1, 8)], {0: 8}, {1: 8}, hop,
    ...                same_core_runtime=one_core).latency_ms  # three hops on one core
    39.0
    >>> frame_schedule([("c0", 10.0), ("c0", 20.0)], [(0, 1, 8)], {0: 8}, {1: 8}, hop,
    ...                same_core_runtime=one_core, single_cpu=()).latency_ms
    33.0
    """
    first, last = (stages[0][0], stages[-1][0]) if stages else (None, None)

    def wire_ms(payload: int, one: Hashable, other: Hashable) -> float:
        on_one_cpu = one == other and (single_cpu is None or one in single_cpu)
        cost = same_core_runtime if on_one_cpu and same_core_runtime else runtime
        return cost.wire_ms(payload)

    arrival: dict[int, float] = {}  # edge index -> when its message has arrived
    core_free: dict[Hashable, float] = {}
    starts, ends = [], []
    finish = 0.0
    for index, (core, compute_ms) in enumerate(stages):
        incoming = [i for i, (_, to, _) in enumerate(edges) if to == index]
        source_bytes = inputs.get(index)
        ready = max((arrival[i] for i in incoming), default=0.0)
        start = max(core_free.get(core, 0.0), ready)
        t = start
        if source_bytes is not None:  # the source's send shares this core
            t += runtime.sender_ms(source_bytes) + wire_ms(source_bytes, first, core)
            t += runtime.receiver_ms(source_bytes)
        t += sum(runtime.receiver_ms(edges[i][2]) for i in incoming) + compute_ms
        for i, (frm, to, payload) in enumerate(edges):
            if frm == index:
                t += runtime.sender_ms(payload)
                arrival[i] = t + wire_ms(payload, core, stages[to][0])
        if index in outputs:
            payload = outputs[index]
            t += runtime.sender_ms(payload)
            finish = max(finish, t + wire_ms(payload, core, last) + runtime.receiver_ms(payload))
        core_free[core] = t
        starts.append(start)
        ends.append(t)
    return FrameSchedule(tuple(starts), tuple(ends),
                         tuple(arrival.get(i, math.nan) for i in range(len(edges))), finish)


def frame_latency_ms(stages: StageTimes, edges: Edges, inputs: Mapping[int, int],
                     outputs: Mapping[int, int], runtime: RuntimeCost) -> float:
    """One frame's latency: from the source's send to the sink's receipt
    (:func:`frame_schedule`)."""
    return frame_schedule(stages, edges, inputs, outputs, runtime).latency_ms


def _spec_bytes(spec) -> int:
    return math.prod(spec.shape) * DTYPE_BYTES[spec.dtype]


def plan_frame_latency_ms(plan: Plan, stage_ms: Sequence[float], cores: Sequence[Hashable],
                          runtime: RuntimeCost, model_outputs: Sequence[str], *,
                          same_core_runtime: RuntimeCost | None = None,
                          single_cpu: Collection[Hashable] | None = None) -> float:
    """:func:`frame_latency_ms` of an exported plan: its links' bytes, the model inputs each
    stage reads, the ``model_outputs`` each stage sends the sink; ``stage_ms`` and ``cores``
    per stage in the plan's order; ``same_core_runtime`` and ``single_cpu`` as
    :func:`frame_schedule` takes them."""
    return plan_frame_schedule(plan, stage_ms, cores, runtime, model_outputs,
                               same_core_runtime=same_core_runtime,
                               single_cpu=single_cpu).latency_ms


def plan_frame_schedule(plan: Plan, stage_ms: Sequence[float], cores: Sequence[Hashable],
                        runtime: RuntimeCost, model_outputs: Sequence[str], *,
                        same_core_runtime: RuntimeCost | None = None,
                        single_cpu: Collection[Hashable] | None = None) -> FrameSchedule:
    """:func:`frame_schedule` of an exported plan (as :func:`plan_frame_latency_ms`); its
    ``arrival_ms`` follow ``plan.links``."""
    stages = list(zip(cores, stage_ms, strict=True))
    edges = [(link.from_stage, link.to_stage, link.transfer_bytes) for link in plan.links]
    inputs, outputs = {}, {}
    for stage in plan.stages:
        given = [_spec_bytes(t) for t in stage.inputs if t.source and t.source.is_model_input]
        made = [_spec_bytes(t) for t in stage.outputs if t.name in model_outputs]
        if given:
            inputs[stage.index] = sum(given)
        if made:
            outputs[stage.index] = sum(made)
    return frame_schedule(stages, edges, inputs, outputs, runtime,
                          same_core_runtime=same_core_runtime, single_cpu=single_cpu)


__all__ = ["FrameSchedule", "frame_latency_ms", "frame_schedule", "plan_frame_latency_ms",
           "plan_frame_schedule"]
