"""The refined one-frame prediction prices hops as the headline does (issue 13's review):
given the hand-off measured on one core, ``frame_schedule`` takes its wire part for a hop
whose ends share one CPU (two stages on one, the source into stage 0's, the sink from the
last stage's) and the cross-core wire elsewhere. Oracle: schedules played by hand."""

from __future__ import annotations

import math

from hwsched.costs.runtime import RuntimeCost
from hwsched.deployment import Plan, StagePlan
from hwsched.schedule.refine import _plan_resource, _single_cpu_resources
from hwsched.tiles.timing import frame_schedule

CROSS = RuntimeCost.asymmetric(sender=(0.1, 0.0), receiver=(0.2, 0.0), wire=(0.3, 0.0))
SAME = RuntimeCost.asymmetric(sender=(0.1, 0.0), receiver=(0.2, 0.0), wire=(0.7, 0.0))
#: Stem and branch on core "a", the join on core "b"; every message 100 bytes.
STAGES = [("a", 10.0), ("a", 20.0), ("b", 5.0)]
EDGES = [(0, 1, 100), (1, 2, 100)]
INPUTS, OUTPUTS = {0: 10}, {2: 10}


def _played(source_wire: float, a_to_a: float, sink_wire: float) -> float:
    """The frame by hand: send 0.1, receive 0.2 on the stage's core; the a->b hop 0.3."""
    stem_end = 0.1 + source_wire + 0.2 + 10.0 + 0.1  # the source's send, receipt, compute, send
    branch_start = stem_end + a_to_a
    branch_end = branch_start + 0.2 + 20.0 + 0.1
    join_end = branch_end + 0.3 + 0.2 + 5.0 + 0.1
    return join_end + sink_wire + 0.2


def test_without_a_same_core_cost_every_hop_takes_the_cross_core_wire():
    schedule = frame_schedule(STAGES, EDGES, INPUTS, OUTPUTS, CROSS)
    assert math.isclose(schedule.latency_ms, _played(0.3, 0.3, 0.3))


def test_hops_on_one_cpu_take_the_same_core_wire():
    schedule = frame_schedule(STAGES, EDGES, INPUTS, OUTPUTS, CROSS, same_core_runtime=SAME)
    # the source on stage 0's core "a", the a->a hop, the sink on the last stage's core "b"
    assert math.isclose(schedule.latency_ms, _played(0.7, 0.7, 0.7))
    assert math.isclose(schedule.arrival_ms[1] - schedule.end_ms[1], 0.3)  # a->b across


def test_a_core_key_of_several_cpus_keeps_the_cross_core_wire():
    schedule = frame_schedule(STAGES, EDGES, INPUTS, OUTPUTS, CROSS, same_core_runtime=SAME,
                              single_cpu={"b"})
    assert math.isclose(schedule.latency_ms, _played(0.3, 0.3, 0.7))


def _stage(index: int, board: str | None, cores: tuple[int, ...] | None) -> StagePlan:
    return StagePlan(index, "host", f"s{index}.tflite", "0" * 64, "fp32", (), (),
                     board=board, cores=cores)


def test_a_plans_one_cpu_resources_are_its_stages_pinned_to_one_core():
    plan = Plan("m", (_stage(0, "p", (0,)), _stage(1, "p", (1, 2)), _stage(2, "q", None),
                      _stage(3, None, None)), ())
    assert _single_cpu_resources(plan) == {_plan_resource(plan.stages[0])} == {"p[0]"}
