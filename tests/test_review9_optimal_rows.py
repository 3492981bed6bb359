"""optimal_rows against brute force on arbitrary time tables: monotone in a strip's end (the
documented requirement) but free in its start — a later start may be slower, as a strip whose
halo is clipped at the top border is — so the greedy fill alone is not exact there."""

from __future__ import annotations

import itertools
import math

from hypothesis import given, settings
from hypothesis import strategies as st

from hwsched.tiles.planning import Span, max_time, optimal_rows


def _compositions(total: int, parts: int):
    for cuts in itertools.combinations(range(1, total), parts - 1):
        yield tuple(b - a for a, b in zip((0, *cuts), (*cuts, total), strict=True))


@st.composite
def tables(draw):
    """``time(k, Span(start, stop))``: per board and start, non-decreasing in ``stop``, at
    times infinite from some end on (a strip no tile can compute)."""
    total = draw(st.integers(1, 9))
    boards = draw(st.integers(1, min(4, total)))
    steps = st.integers(0, 6)
    table = {}
    for k in range(boards):
        for start in range(total):
            value = float(draw(st.integers(0, 20)))
            infinite_from = draw(st.integers(start + 1, total + 3))
            for stop in range(start + 1, total + 1):
                value += draw(steps)
                table[k, start, stop] = math.inf if stop >= infinite_from else value
    return total, boards, table


@settings(max_examples=300, deadline=None)
@given(case=tables())
def test_optimal_rows_is_the_brute_force_min_max(case):
    total, boards, table = case

    def time(k: int, span: Span) -> float:
        return table[k, span.start, span.stop]

    rows = optimal_rows(time, total, boards)
    assert len(rows) == boards and sum(rows) == total and min(rows) >= 1
    brute = min(max_time(time, c) for c in _compositions(total, boards))
    assert max_time(time, rows) == brute
