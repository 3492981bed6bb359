"""Strips re-sized on measured finishes follow the messages a new split resizes (issue 14):
the oracle plays one frame of a scatter, its tiles and a gather for every split with
:func:`hwsched.tiles.timing.frame_schedule` (the runners' order: the scatter sends each tile
its region in board order on the root's core, the root's own tile waits for all of them), the
tiles' compute being the timed compute scaled as the planner's prediction scales.

Failed before (``test_a_received_strip...``): the re-sizing held each tile's non-compute part
fixed, so its messages' ends and the root's sends before it were priced as timed whatever the
new strips' bytes.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwsched.costs.runtime import RuntimeCost
from hwsched.tiles.rebalance import measured_runs, rebalanced_rows
from hwsched.tiles.timing import frame_schedule
from tests.test_tiles_balance import _compositions, _spans


def _frame(rows, compute, messages, runtime, bypass):
    """One frame of scatter (core 0) → tiles (tile k on core k) → gather (core 0)."""
    k_tiles = len(rows)
    gather = k_tiles + 1
    stages = [(0, 0.5)] + [(k, compute(k, span)) for k, span in enumerate(_spans(rows))]
    stages.append((0, 0.3))
    sizes = [messages(k, span) for k, span in enumerate(_spans(rows))]
    edges = [(0, 1 + k, s) for k, (s, _) in enumerate(sizes)]
    if bypass is not None:
        edges.append((0, gather, bypass))
    edges += [(1 + k, gather, g) for k, (_, g) in enumerate(sizes)]
    return frame_schedule(stages, edges, {0: 64}, {gather: 8}, runtime), edges


@st.composite
def cases(draw):
    boards = draw(st.integers(2, 3))
    total = draw(st.integers(boards, 9))
    rows = draw(st.sampled_from(list(_compositions(total, boards))))
    model = [(draw(st.floats(0.0, 3.0)), draw(st.floats(0.1, 5.0))) for _ in range(boards)]
    truth = [draw(st.floats(0.5, 2.0)) for _ in range(boards)]  # timed / predicted
    halo = [draw(st.integers(0, 2)) for _ in range(boards)]
    row_bytes = draw(st.integers(1, 4000))
    runtime = RuntimeCost.asymmetric(
        sender=(draw(st.floats(0.0, 2.0)), draw(st.floats(0.0, 1e-3))),
        receiver=(draw(st.floats(0.0, 2.0)), draw(st.floats(0.0, 1e-3))))
    bypass = draw(st.one_of(st.none(), st.integers(0, 4000)))
    return rows, model, truth, halo, row_bytes, runtime, bypass


@settings(max_examples=80, deadline=None)
@given(case=cases())
def test_measured_rows_minimise_the_frames_latency_over_every_split(case):
    rows, model, truth, halo, row_bytes, runtime, bypass = case

    def predicted(k, span):
        return model[k][0] + model[k][1] * span.size

    def compute(k, span):
        return truth[k] * predicted(k, span)

    def messages(k, span):
        return (span.size + halo[k]) * row_bytes, span.size * row_bytes

    schedule, edges = _frame(rows, compute, messages, runtime, bypass)
    gather = len(rows) + 1
    run = {"scatter_stage": 0, "gather_stage": gather,
           "tiles": [{"stage": 1 + k, "rows": [s.start, s.stop]}
                     for k, s in enumerate(_spans(rows))]}
    stage_ms = [0.5, *(compute(k, s) for k, s in enumerate(_spans(rows))), 0.3]
    (tiles,) = measured_runs([run], [(a, b) for a, b, _ in edges], stage_ms, schedule)
    chosen = rebalanced_rows(tiles, predicted, messages, runtime)

    def latency(split):
        return _frame(split, compute, messages, runtime, bypass)[0].latency_ms

    best = min(latency(split) for split in _compositions(sum(rows), len(rows)))
    assert latency(chosen) == pytest.approx(best, rel=1e-9, abs=1e-9)


def test_a_received_strip_moves_rows_off_the_tile_that_receives_it():
    """Three boards timed at strips (3, 2, 1) of 6 rows (the root 2 ms a row, the others 1),
    1 ms per message sent and 1 ms per kB received (a kB a row each way): a tile's receipt of
    its region grows with its strip, which the fixed part of its timed finish held still, so
    rows went to tile 1 until its receipt made it the last (1, 4, 1)."""
    runtime = RuntimeCost.asymmetric(sender=(1.0, 0.0), receiver=(0.0, 1e-3))

    def compute(k, span):
        return (2.0 if k == 0 else 1.0) * span.size

    def messages(k, span):
        return span.size * 1000, span.size * 1000

    rows = (3, 2, 1)
    schedule, edges = _frame(rows, compute, messages, runtime, None)
    run = {"scatter_stage": 0, "gather_stage": 4,
           "tiles": [{"stage": 1 + k, "rows": [s.start, s.stop]}
                     for k, s in enumerate(_spans(rows))]}
    stage_ms = [0.5, *(compute(k, s) for k, s in enumerate(_spans(rows))), 0.3]
    (tiles,) = measured_runs([run], [(a, b) for a, b, _ in edges], stage_ms, schedule)

    def latency(split):
        return _frame(split, compute, messages, runtime, None)[0].latency_ms

    best = min(latency(split) for split in _compositions(6, 3))
    assert rebalanced_rows(tiles, compute) == (1, 4, 1)  # the sends and receipts as timed
    assert latency((1, 4, 1)) == pytest.approx(best + 2.0)
    assert latency(rebalanced_rows(tiles, compute, messages, runtime)) == pytest.approx(best)
