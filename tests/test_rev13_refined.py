"""Review of issue 13's refined graph prediction: stages of ONE board on disjoint core sets
compute at once (as the placement coster prices them), so the frame played from their timed
stages must not queue them on one core. Real export of a tiny two-branch model (the graph13
fixture), LiteRT with 1 thread; the oracle is the longest path over the measured times."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from hwsched.costs.runtime import RuntimeCost
from tests.test_graph13_refined import exported  # noqa: F401  (the module's export fixture)

pytestmark = pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2,
                                reason="timing a stage beside its partner needs two CPUs")


def test_branches_on_two_core_sets_of_one_board_overlap(exported, tmp_path):  # noqa: F811
    from hwsched.schedule.refine import time_graph_plan

    plan_dir, graph, _, partners = exported
    one_board = tmp_path / "one_board"
    shutil.copytree(plan_dir, one_board)
    plan = json.loads((one_board / "plan.json").read_text())
    for stage, cores in zip(plan["stages"], ([0], [0], [1], [0]), strict=True):
        stage["board"], stage["cores"] = "chip", cores  # branch b on the chip's other core
    (one_board / "plan.json").write_text(json.dumps(plan))
    free = RuntimeCost(frame_ms=0.0, per_byte_ms=0.0)
    timing = time_graph_plan(one_board, partners, free, graph.outputs, gap_ms=5.0, runs=5)
    stem, a, b, join = timing.stage_ms
    assert timing.latency_ms == pytest.approx(stem + max(a, b) + join, rel=1e-9)
