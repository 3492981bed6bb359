"""A charged tiled plan (``analyze --tiles --runtime-cost``) against the frame the runners
play: the oracle is :func:`hwsched.tiles.timing.frame_schedule` (each stage on its core
receiving, computing and sending one after another, the source's and sink's hops on the
root) over the stage graph ``export --tiles`` lays out for the plan
(:func:`hwsched.tiles.layout.runs_layout`, played by :func:`tests.test_tilefix_charge.played`:
the root's own tile is a stage sent its region like any other), with each stage's invocation
and a link of no time, so that every difference is the hand-off and invocation charge.

Failed before: the root's per-plan overhead carried two hops' four ends as well, which are
the model input's and output's hops that :func:`~hwsched.schedule.tiles.runner_io_ms` charges
(4 hop ends counted twice: a tiled candidate ranked later than the runner makes it); and a
tile on another board kept the root's ends of its hops on its own core's busy time (the
period), where the root already paid them, and the root's per-byte ends of the other tiles'
scatter and gather sat on the link, not on the root's core. Since the layout oracle (issue
14, tilefix): the root's own tile's bytes, the gather stage's invocation and the order of the
root's sends and receipts were missing too (:mod:`tests.test_tilefix_charge`).
"""

from __future__ import annotations

import pytest

from hwsched.tiles.planning import TileBoard
from tests.test_tilefix_charge import OVERHEAD_MS, assert_plays_as_planned
from tests.test_tiles_balance import _conv_stack


@pytest.mark.parametrize("speeds", [(1.0, 1.0), (1.0, 0.5), (0.6, 1.0), (1.0, 1.0, 1.0)])
def test_a_charged_plan_costs_what_the_runners_spend(speeds):
    graph = _conv_stack()
    boards = [TileBoard(f"b{k}", tuple(0.0 if p == 0 else 8.0 / s for p in range(4)),
                        OVERHEAD_MS[k])
              for k, s in enumerate(speeds)]
    plan, _ = assert_plays_as_planned(graph, boards)
    assert plan.runs, "the plan tiles something"
