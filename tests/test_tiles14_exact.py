"""The exact path search (:func:`hwsched.tiles.planning.optimal_path_rows`) where its
premises are stretched, against every split enumerated (issue 14, review).

Failed before (``test_a_padding_only_strip...``): the search priced the root's receipts of
every strip — a constant over the splits, since the strips partition the run's output — from
the *equal* split's gather bytes; when a strip of that split lies entirely in the zero padding
the run ends with, no tile can compute it and its bytes were priced 0, so the constant came
out too small, the bound fell below the real best split, and the search pruned it (the best
candidate was kept, not the optimum).
"""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from hwsched.costs.runtime import RuntimeCost
from hwsched.tiles.planning import (
    EXACT_PATH_ROWS,
    SplitPaths,
    TileBoard,
    TileCoster,
    TileLink,
    charge_runtime,
    optimal_cost,
    optimal_path_rows,
    optimal_rows,
    proportional_rows,
)
from hwsched.tiles.receptive import Span, fused_run
from tests.test_tiles14_paths import played_ms
from tests.test_tiles_balance import _compositions, _conv_stack


def _padded(model, row_bytes: int, total: int, padding: int):
    """Affine own times (a halo's fixed rows plus a per-row cost) and bytes per row; a strip
    lying entirely in the last ``padding`` rows (the run's zero padding) is infinite, with
    no bytes (as the planner's ``split_paths`` and ``bench_tiles`` price it)."""

    def terms(k: int, rows: Span):
        if rows.start >= total - padding:
            return math.inf, (0, 0)
        fixed, per_row, halo = model[k]
        return fixed + per_row * rows.size, ((rows.size + halo) * row_bytes,
                                             rows.size * row_bytes)

    return terms


@st.composite
def padded_tables(draw):
    """Up to 10 rows on 2-4 boards whose last rows are zero padding, so that the equal split's
    last strip lies in it, and a runner of random per-message and per-byte ends."""
    boards = draw(st.integers(2, 4))
    total = draw(st.integers(boards + 1, 10))
    padding = draw(st.integers(total // boards, total - boards))  # the equal split's last
    model = [(draw(st.floats(0.0, 5.0)), draw(st.floats(0.1, 5.0)),
              draw(st.integers(0, 3))) for _ in range(boards)]
    link = TileLink(math.inf, 0.0, 0.0, draw(st.floats(0.0, 2e-3)), draw(st.floats(0.0, 2e-3)),
                    draw(st.floats(0.0, 3.0)), draw(st.floats(0.0, 3.0)))
    row_bytes = draw(st.integers(1, 4000))
    bypass = draw(st.one_of(st.none(), st.integers(0, 5000)))
    split = SplitPaths(_padded(model, row_bytes, total, padding), link,
                       draw(st.floats(0.0, 1.0)), bypass)
    feasible = [rows for rows in _compositions(total, boards) if total - rows[-1] < total - padding]
    return split, total, boards, draw(st.sampled_from(feasible))


#: 5 rows on 3 boards, the last row zero padding: the equal split (2, 2, 1) cannot be computed.
PADDED = (SplitPaths(_padded([(1.0, 2.0, 0), (2.0, 2.0, 0), (0.0, 2.0, 1)], 500, 5, 1),
                     TileLink(math.inf, receiver_per_byte_ms=1e-3), 0.0, None), 5, 3, (1, 1, 3))


def test_the_padding_case_written_out():
    """Each strip's receipt costs the root 0.5 ms a row: (2, 1, 2) reaches the gather at
    6.5 ms (paths 6.5, 6.0, 5.5), the candidate (1, 1, 3) at 7.0; priced from the equal split,
    the receipts missed the padding row's 0.5 ms and the search kept the candidate."""
    split, total, boards, candidate = PADDED
    assert split.paths((2, 1, 2)) == pytest.approx((6.5, 6.0, 5.5))
    assert split.latest(candidate) == pytest.approx(7.0)
    assert optimal_path_rows(split, total, boards, (candidate,)) == (2, 1, 2)


@settings(max_examples=300, deadline=None)
@given(case=padded_tables())
@example(case=PADDED)
def test_a_padding_only_strip_does_not_hide_the_best_split(case):
    split, total, boards, candidate = case
    assert math.isinf(split.latest(_equal(total, boards)))  # the premise: a padding strip
    brute = min(split.latest(rows) for rows in _compositions(total, boards))
    rows = optimal_path_rows(split, total, boards, (candidate,))
    assert split.latest(rows) == pytest.approx(brute, rel=1e-9)


def _equal(total, boards):
    return tuple(total // boards + (k < total % boards) for k in range(boards))


# -- beyond the exact search's rows on three boards -----------------------------------------------
def test_a_tall_run_on_three_boards_is_no_later_than_the_old_strips():
    """300 rows on 3 boards (past ``EXACT_PATH_ROWS``), a runner of 6 ms per message sent:
    EdgeCI's moves on the paths from the best candidate, not exact. Checked on the frame the
    runners play, without brute force: the splits the planner used to choose (by speed, the
    min–max of own times) and the equal one are no earlier, and no single row moved between
    two boards makes it earlier."""
    total = 300
    assert total > EXACT_PATH_ROWS
    graph = _conv_stack(rows=total)
    speeds = (1.0, 0.6, 1.5)
    boards = [TileBoard(f"b{k}", tuple(0.0 if p == 0 else 90.0 / s for p in range(4)), 0.2)
              for k, s in enumerate(speeds)]
    runtime = RuntimeCost.asymmetric(sender=(6.0, 2e-4), receiver=(1.0, 3e-4))
    coster = TileCoster(graph, *charge_runtime(boards, TileLink(math.inf), runtime))
    run = fused_run(graph, 1, 3)
    chosen = tuple(t.region.rows.size for t in optimal_cost(coster, run, 3).tiles)
    old = {"speed": proportional_rows(total, speeds), "equal": _equal(total, 3),
           "own": optimal_rows(coster.time_fn(run, 3), total, 3)}
    played = {name: played_ms(coster, run, rows, runtime) for name, rows in old.items()}
    best = played_ms(coster, run, chosen, runtime)
    assert best < played["speed"] - 1.0 and best < played["own"] - 5.0  # the moves pay
    assert best <= min(played.values())
    for a, b in itertools.permutations(range(3), 2):
        moved = list(chosen)
        moved[a], moved[b] = moved[a] - 1, moved[b] + 1
        assert played_ms(coster, run, moved, runtime) >= best - 1e-9
