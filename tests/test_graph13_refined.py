"""Issue 13: a graph placement's refined prediction from its exported stages, each timed
whole (paced) beside the stage that overlaps it in the one-frame schedule. A real export of a
tiny two-branch Keras model, LiteRT with 1 thread."""

from __future__ import annotations

import math
import os

import pytest

from hwsched.costs.runtime import RuntimeCost
from tests.placement_models import BRANCH_PARALLEL_MAPPING

pytestmark = pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2,
                                reason="timing a stage beside its partner needs two CPUs")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from hwsched.costs.placement import PlacementCoster
    from hwsched.costs.profile import parse_profile
    from hwsched.export.graph import export_placement
    from hwsched.load import LoadedModel
    from hwsched.load.keras_reader import read_keras_model
    from hwsched.mapping import parse_mapping, resolve_mapping
    from hwsched.placement import Board
    from tests.placement_models import two_branch_model

    graph, binding = read_keras_model(two_branch_model(size=8, channels=8), "two_branch",
                                      source="two_branch_model")
    loaded = LoadedModel(graph=graph, source="test", kind="keras", keras=binding)
    placement = resolve_mapping(parse_mapping(BRANCH_PARALLEL_MAPPING, "mapping"), graph)
    plan_dir = tmp_path_factory.mktemp("graph13")
    export_placement(loaded, placement, plan_dir, link="gige", samples=2, cache=False)
    boards = [Board(b["name"], b["platform"], tuple(b["cores"]))
              for b in BRANCH_PARALLEL_MAPPING["boards"]]
    branch_ms = {"a0": 5.0, "a1": 5.0, "b0": 5.0, "b1": 5.0}  # branches outlast the hop
    profile = parse_profile({"model": graph.name, "platform": "rpi4", "segments": [
        {"first_layer": x.name, "last_layer": x.name, "latency_ms": branch_ms.get(x.name, 0.1)}
        for x in graph.layers]})
    coster = PlacementCoster(graph, boards, "gige", profile=profile,
                             shared_chips=[("pi_a", "pi_b")])
    return plan_dir, graph, placement, coster.co_run_partners(coster.evaluate(placement))


def test_the_branches_are_timed_beside_each_other(exported):
    _, graph, placement, partners = exported
    branch = {i for i, s in enumerate(placement.stages)
              if {graph.layers[p].name for p in s.layers} <= {"a0", "a1", "b0", "b1"}}
    a, b = sorted(branch)
    assert partners == tuple(b if i == a else a if i == b else None
                             for i in range(len(placement.stages)))


def test_refined_prediction_has_one_time_per_stage_and_covers_the_longest_path(exported):
    from hwsched.schedule.refine import time_graph_plan
    from hwsched.tiles.timing import plan_frame_latency_ms

    plan_dir, graph, placement, partners = exported
    free = RuntimeCost(frame_ms=0.0, per_byte_ms=0.0)
    timing = time_graph_plan(plan_dir, partners, free, graph.outputs, gap_ms=5.0, runs=5)
    assert len(timing.stage_ms) == len(placement.stages) == 4
    assert all(math.isfinite(ms) and ms > 0 for ms in timing.stage_ms)
    assert timing.latency_ms >= max(timing.stage_ms)
    stem, a, b, join = timing.stage_ms  # the mapping's order: stem, branch a, branch b, join
    # no hand-off cost: one frame is the stem, the slower branch, the join (hand-computed)
    assert timing.latency_ms == pytest.approx(stem + max(a, b) + join, rel=1e-9)
    from hwsched.deployment import load_plan

    costly = RuntimeCost(frame_ms=0.3, per_byte_ms=0.0)
    with_handoffs = plan_frame_latency_ms(load_plan(plan_dir), timing.stage_ms,
                                          ["pi_a", "pi_a", "pi_b", "pi_a"], costly,
                                          graph.outputs)
    assert with_handoffs > timing.latency_ms


def test_partners_must_name_stages(exported):
    from hwsched.errors import ScheduleError
    from hwsched.schedule.refine import time_graph_plan

    plan_dir, graph, _, _ = exported
    with pytest.raises(ScheduleError, match="3 partners given for 4 stages"):
        time_graph_plan(plan_dir, (None, None, None), RuntimeCost(0.0, 0.0), graph.outputs)
