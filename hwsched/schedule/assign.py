"""Which boards take which stages: the orders of platforms the searches run over.

* ``assign="fixed"``: stage ``i`` runs on the ``i``-th board given; with fewer stages than
  boards the last boards stay idle. ``stages="auto"`` reads the best split for every stage count
  off one DP (:func:`~hwsched.schedule.search.best_per_prefix`) and searches the best count.
* ``assign="auto"``: any of the boards in any order. Identical boards are interchangeable, so
  only *distinct* orders of the multiset of platforms are tried (8 boards of 2 kinds: 256
  orders of every length, not 8!). Up to :data:`ORDER_LIMIT` orders every one is searched.
  Beyond that the throughput objective uses :func:`min_bottleneck_order`, an exact search over
  the multiset of boards still unused; latency and energy have no such search and are refused.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from hwsched.errors import ScheduleError
from hwsched.schedule.context import Context
from hwsched.schedule.records import AUTO_STAGES
from hwsched.schedule.search import best_per_prefix

#: ``assign="auto"`` searches every distinct order up to this many (6 distinct boards: 720).
ORDER_LIMIT = 720

Order = tuple[str, ...]
Cuts = tuple[int, ...]


@dataclass(frozen=True)
class SearchPlan:
    """Orders to search in full, and single splits to evaluate beside them."""

    orders: tuple[Order, ...]
    seeds: tuple[tuple[Order, Cuts], ...] = ()


def check_stage_count(stages: int | str | None, boards: int) -> None:
    """A cheap check, before any model is built: ``stages`` is None, ``"auto"`` or a whole
    number from 1 to the number of boards."""
    if stages is None or stages == AUTO_STAGES:
        return
    if isinstance(stages, bool) or not isinstance(stages, int) or stages < 1:
        raise ScheduleError(f"stages must be 'auto' or a whole number >= 1, got {stages!r}")
    if stages > boards:
        raise ScheduleError(f"stages {stages} is more than the {boards} boards given")


def stage_counts(stages: int | str | None, boards: int, layers: int) -> tuple[int, ...]:
    """The numbers of stages allowed: every count for ``"auto"``, else the one given (all the
    boards when None)."""
    check_stage_count(stages, boards)
    if stages == AUTO_STAGES:
        return tuple(range(1, min(boards, layers) + 1))
    count = boards if stages is None else int(stages)
    if count > layers:
        raise ScheduleError(f"cannot split {layers} layers into {count} stages")
    return (count,)


def search_plan(
    ctx: Context, objective: str, assign: str, counts: Sequence[int]
) -> SearchPlan:
    if assign == "fixed":
        return _fixed_plan(ctx, objective, counts)
    multiset = ctx.boards.counts
    total = sum(count_orders(multiset, k) for k in counts)
    if total <= ORDER_LIMIT:
        given = ctx.boards.names
        orders = [o for k in counts for o in sorted(multiset_orders(multiset, k))]
        first = [given[:k] for k in counts if given[:k] in orders]
        return SearchPlan(tuple(dict.fromkeys([*first, *orders])))
    if objective != "throughput":
        raise ScheduleError(
            f"assign='auto' by {objective} searches every distinct order of the boards: "
            f"{total} orders exceed the exact search's limit of {ORDER_LIMIT}; use the "
            "throughput objective (exact over the multiset of boards), assign='fixed' or "
            "fewer boards"
        )
    found = min_bottleneck_order(ctx, multiset, counts)
    return SearchPlan((found[0],) if found else (ctx.boards.names[: max(counts)],))


def _fixed_plan(ctx: Context, objective: str, counts: Sequence[int]) -> SearchPlan:
    names = ctx.boards.names
    if len(counts) == 1:
        return SearchPlan((names[: counts[0]],))
    per_count = best_per_prefix(ctx, names[: max(counts)], objective)
    seeds = tuple(
        (names[:k], cuts) for k, cuts in zip(counts, per_count, strict=True) if cuts is not None
    )
    if not seeds:
        return SearchPlan((names[: max(counts)],))
    evaluated = [ctx.evaluate(order, cuts) for order, cuts in seeds]
    best = min(evaluated, key=lambda c: (c.objective_value(objective), len(c.stages)))
    return SearchPlan((names[: len(best.stages)],), seeds)


# -- distinct orders of a multiset -----------------------------------------------------------
def multiset_orders(counts: Mapping[str, int], length: int) -> Iterator[Order]:
    """Every distinct sequence of ``length`` platforms using each at most ``counts`` times.

    >>> sorted(multiset_orders({"a": 2, "b": 1}, 2))
    [('a', 'a'), ('a', 'b'), ('b', 'a')]
    """
    if length == 0:
        yield ()
        return
    for name, left in counts.items():
        if left:
            rest = {**counts, name: left - 1}
            for tail in multiset_orders(rest, length - 1):
                yield (name, *tail)


def count_orders(counts: Mapping[str, int], length: int) -> int:
    """How many sequences :func:`multiset_orders` yields, without listing them:
    ``length! * [x^length] prod_i sum_{j <= n_i} x^j / j!``.

    >>> count_orders({"a": 2, "b": 1}, 2), count_orders({"a": 4, "b": 4}, 8)
    (3, 70)
    """
    poly = [Fraction(1)]
    for n in counts.values():
        term = [Fraction(1, math.factorial(j)) for j in range(n + 1)]
        poly = [
            sum((poly[i] * term[d - i] for i in range(len(poly)) if 0 <= d - i < len(term)),
                Fraction(0))
            for d in range(len(poly) + len(term) - 1)
        ]
    return int(poly[length] * math.factorial(length)) if length < len(poly) else 0


# -- exact minimum bottleneck over the multiset of unused boards ------------------------------
State = tuple[tuple[int, ...], str]  # (boards used per kind, precision of the last stage)


def min_bottleneck_order(
    ctx: Context, counts: Mapping[str, int], stage_counts_allowed: Sequence[int]
) -> tuple[Order, Cuts] | None:
    """The order and cuts with the smallest pipeline bottleneck over every distinct order of
    every allowed number of the boards (``None`` if nothing is feasible).

    Binary search over the finite stage and link costs ``T``: is there a split with every stage
    and link at most ``T``? A stage on kind ``t`` starting at boundary ``b`` can end anywhere in
    ``(b, reach_t(b)]`` (a stage's latency and memory only grow with its end), so the set of
    boundaries reachable with a multiset ``c`` of used boards whose last stage runs at
    precision ``p`` follows from the sets one board earlier in ``O(L)``. States are
    ``prod(n_i + 1) x precisions``; each test costs ``O(kinds L^2)`` for the reach arrays plus
    ``O(states x kinds x L)``; about ``log2(kinds L^2 / 2)`` tests.
    """
    kinds = tuple(counts)
    thresholds = _thresholds(ctx, kinds)
    if not thresholds.size or not _reachable(ctx, counts, stage_counts_allowed, thresholds[-1]):
        return None
    low, high = 0, len(thresholds) - 1
    while low < high:  # smallest threshold that is feasible
        middle = (low + high) // 2
        if _reachable(ctx, counts, stage_counts_allowed, thresholds[middle]):
            high = middle
        else:
            low = middle + 1
    return _trace(ctx, counts, stage_counts_allowed, thresholds[low])


def _thresholds(ctx: Context, kinds: Sequence[str]) -> np.ndarray:
    values = [ctx.stage_matrix(t, relaxed=False).ravel() for t in kinds]
    values += [ctx.link_table(h, t).latency_ms for h, t in itertools.product(kinds, repeat=2)]
    merged = np.concatenate(values)
    return np.unique(merged[np.isfinite(merged)])


def _reach(ctx: Context, kinds: Sequence[str], bound: float) -> dict[str, np.ndarray]:
    """``reach[t][b]``: the last boundary a stage on ``t`` starting at ``b`` can end at."""
    out = {}
    for t in kinds:
        matrix = ctx.stage_matrix(t, relaxed=False)
        out[t] = np.arange(matrix.shape[0]) + np.count_nonzero(matrix <= bound, axis=1)
    return out


def _ends(starts: np.ndarray, reach: np.ndarray) -> np.ndarray:
    """Boundaries ``e`` with some start ``s < e <= reach[s]``; ``reach`` is monotone, so the
    largest reach among the starts before ``e`` decides."""
    furthest = np.maximum.accumulate(np.where(starts, reach, -1))
    ends = np.zeros(len(starts), dtype=bool)
    ends[1:] = furthest[:-1] >= np.arange(1, len(starts))
    return ends


def _levels(
    ctx: Context, counts: Mapping[str, int], bound: float
) -> Iterator[dict[State, np.ndarray]]:
    """Per number of stages used: every state with the boundaries its last stage can end at."""
    kinds = tuple(counts)
    reach = _reach(ctx, kinds, bound)
    size = len(ctx.graph) + 1
    start = np.zeros(size, dtype=bool)
    start[0] = True
    level: dict[State, np.ndarray] = {}
    for i, t in enumerate(kinds):
        used = tuple(int(j == i) for j in range(len(kinds)))
        _merge(level, (used, ctx.precisions[t]), _ends(start, reach[t]))
    while level:
        yield level
        following: dict[State, np.ndarray] = {}
        for (used, precision), ends in level.items():
            for i, t in enumerate(kinds):
                if used[i] == counts[t]:
                    continue
                ok = ctx.link_table(_kind_at(ctx, kinds, precision), t).latency_ms <= bound
                starts = ends & ok
                if starts.any():
                    more = tuple(u + (j == i) for j, u in enumerate(used))
                    _merge(following, (more, ctx.precisions[t]), _ends(starts, reach[t]))
        level = following


def _kind_at(ctx: Context, kinds: Sequence[str], precision: str) -> str:
    """A kind running ``precision``: the link table depends only on the two precisions."""
    return next(t for t in kinds if ctx.precisions[t] == precision)


def _merge(level: dict[State, np.ndarray], state: State, ends: np.ndarray) -> None:
    if ends.any():
        level[state] = level[state] | ends if state in level else ends


def _reachable(ctx: Context, counts: Mapping[str, int], allowed: Sequence[int], bound) -> bool:
    return any(
        ends[-1]
        for level in _levels(ctx, counts, bound)
        for (used, _), ends in level.items()
        if sum(used) in allowed
    )


def _trace(
    ctx: Context, counts: Mapping[str, int], allowed: Sequence[int], bound: float
) -> tuple[Order, Cuts]:
    """One order and cuts within ``bound``, fewest stages first, walked back level by level."""
    kinds = tuple(counts)
    levels = list(_levels(ctx, counts, bound))
    reach = _reach(ctx, kinds, bound)
    end = len(ctx.graph)
    state = next(
        s for level in levels for s, ends in sorted(level.items())
        if sum(s[0]) in allowed and ends[-1]
    )
    order: list[str] = []
    cuts: list[int] = []
    for depth in range(sum(state[0]) - 1, -1, -1):
        used, precision = state
        for i, t in enumerate(kinds):
            if not used[i] or ctx.precisions[t] != precision:
                continue
            before = tuple(u - (j == i) for j, u in enumerate(used))
            begin = _stage_start(ctx, levels, depth, before, t, end, reach[t], bound, kinds)
            if begin is not None:
                order.append(t)
                if depth:
                    cuts.append(begin[0])
                    state, end = begin[1], begin[0]
                break
        else:  # the search said the bound is reachable, so some stage must lead here
            raise AssertionError(f"no stage ends at {end} within {bound} ms")
    return tuple(reversed(order)), tuple(reversed(cuts))


def _stage_start(ctx, levels, depth, before, kind, end, reach, bound, kinds):
    """A boundary ``b < end <= reach[b]`` where a state with ``before`` used ends (or 0 for
    the first stage), with the link into ``kind`` within ``bound``: ``(b, state)``."""
    if depth == 0:
        return (0, None) if reach[0] >= end else None
    for (used, precision), ends in sorted(levels[depth - 1].items()):
        if used != before:
            continue
        ok = ctx.link_table(_kind_at(ctx, kinds, precision), kind).latency_ms <= bound
        for b in np.flatnonzero(ends & ok):
            if b < end <= reach[b]:
                return int(b), (used, precision)
    return None

