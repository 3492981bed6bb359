"""A tensor that skips a tiled run with no bytes (an empty tensor made before the run and
read after it) is still one message from the run's scatter stage to its gather stage in the
exported stage graph, and a runner pays both its ends per message whatever its size.

Oracle: the frame the exported layout plays (:func:`tests.test_tilefix_charge.played`, the
layout of ``export --tiles`` with :func:`hwsched.tiles.timing.frame_schedule`).

Failed before: the planner charged the bypass message only when its bytes were not zero
(``if bypass_bytes``), so a zero-byte bypass lost both its per-message ends in the latency
and in the root's busy time.
"""

from __future__ import annotations

import pytest

from hwsched.ir import LayerGraph, OpKind
from tests.test_tilefix_charge import _boards, _edge_bytes, assert_plays_as_planned
from tests.test_tiles_planning import _Builder


def empty_bypass() -> tuple[LayerGraph, dict[str, tuple[float, float]]]:
    """x → l1 conv → l2 (an empty tensor, a model output) → l3 conv(l1) → l4 conv → l5
    global pool → l6 dense: the run l3..l4 is crossed by l2 alone, which has no bytes."""
    b = _Builder(12, 4, channels=2)
    b.window(OpKind.CONV2D, 3, 1, "same")
    l1 = b.last
    empty = b.add(OpKind.GLOBAL_POOL, (l1.name,), (1, 0))
    b.last = l1
    b.window(OpKind.CONV2D, 3, 1, "same")
    b.window(OpKind.CONV2D, 3, 1, "same")
    pool = b.add(OpKind.GLOBAL_POOL, (b.last.name,), (1, 2))
    dense = b.add(OpKind.DENSE, (pool,), (1, 4))
    graph = LayerGraph("empty_bypass", tuple(b.layers), outputs=(empty, dense))
    costs = {"l1": (1.0, 500.0), "l2": (0.1, 500.0), "l3": (8.0, 8.0), "l4": (8.0, 8.0),
             "l5": (0.2, 500.0), "l6": (0.1, 500.0)}
    return graph, costs


@pytest.mark.parametrize("speeds", [(1.0, 1.0), (1.0, 0.5), (1.0, 1.0, 1.0)])
def test_a_zero_byte_bypass_is_charged_its_message(speeds):
    graph, costs = empty_bypass()
    assert graph.tensor("l2").bytes == 0
    plan, layout = assert_plays_as_planned(graph, _boards(graph, speeds, costs))
    (run,) = plan.runs
    assert (run.run.start, run.run.end) == (3, 4)
    (placed,) = layout.runs
    bypass = [e for e in layout.edges if (e.source, e.target) == (placed.scatter, placed.gather)]
    assert [_edge_bytes(graph, e) for e in bypass] == [0], "the layout sends it, empty"
