"""Which boards take which stages: the orders of platforms the searches run over.

* ``assign="fixed"``: stage ``i`` runs on the ``i``-th board given; with fewer stages than
  boards the last boards stay idle. ``stages="auto"`` reads the best split for every stage count
  off one DP (:func:`~hwsched.schedule.search.best_per_prefix`) and searches the best count.
* ``assign="auto"``: any of the boards in any order. Identical boards are interchangeable, so
  only *distinct* orders of the multiset of platforms are tried (8 boards of 2 kinds: 70
  orders of all eight, 250 of every length, not 8! = 40,320). Up to :data:`ORDER_LIMIT` orders
  every one is searched. Beyond that the throughput objective uses
  :func:`min_bottleneck_order`, an exact search over the multiset of boards still unused;
  latency and energy have no such search and are refused.
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

#: ``assign="auto"`` searches every distinct order up to this many: 6 distinct boards give 720
#: orders of all six, 1,956 of every number of them (``stages="auto"``).
ORDER_LIMIT = 2000

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
    """The orders to search for ``counts`` stages (see the module docstring)."""
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
@dataclass(frozen=True, eq=False)
class _Level:
    """Every state after the same number of stages, one row each: boards used per kind, the
    precision (index) of the last stage, and the boundaries that stage can end at."""

    used: np.ndarray  # (states, kinds) int
    precision: np.ndarray  # (states,) int
    ends: np.ndarray  # (states, L + 1) bool


@dataclass(frozen=True, eq=False)
class _Bounded:
    """The board multiset and every cost table, tested against one bound ``T``."""

    kinds: tuple[str, ...]
    limits: np.ndarray  # boards per kind
    kind_precision: np.ndarray  # precision index per kind
    reach: tuple[np.ndarray, ...]  # per kind: last boundary a stage from b can end at
    link_ok: np.ndarray  # (precisions, precisions, L + 1) bool: cut within the bound


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
    ``prod(n_i + 1) x precisions``, one level per number of stages, each level a few array
    operations per kind; each test also costs ``O(kinds L^2)`` for the reach arrays, and there
    are about ``log2(kinds L^2 / 2)`` tests.
    """
    thresholds = _thresholds(ctx, tuple(counts))
    allowed = tuple(stage_counts_allowed)
    if not thresholds.size or not _feasible(_levels(_bounded(ctx, counts, thresholds[-1])),
                                            allowed):
        return None
    low, high = 0, len(thresholds) - 1
    while low < high:  # smallest threshold that is feasible
        middle = (low + high) // 2
        if _feasible(_levels(_bounded(ctx, counts, thresholds[middle])), allowed):
            high = middle
        else:
            low = middle + 1
    return _trace(_bounded(ctx, counts, thresholds[low]), allowed)


def _thresholds(ctx: Context, kinds: Sequence[str]) -> np.ndarray:
    size = len(ctx.graph) + 1
    upper = np.triu_indices(size, 1)
    values = [ctx.stage_matrix(t, relaxed=False)[upper] for t in kinds]
    values += [ctx.link_table(h, t).latency_ms for h, t in itertools.product(kinds, repeat=2)]
    merged = np.concatenate(values)
    return np.unique(merged[np.isfinite(merged)])


def _bounded(ctx: Context, counts: Mapping[str, int], bound: float) -> _Bounded:
    kinds = tuple(counts)
    precisions = sorted({ctx.precisions[t] for t in kinds})
    by_precision = {p: next(t for t in kinds if ctx.precisions[t] == p) for p in precisions}
    reach = []
    for t in kinds:
        matrix = ctx.stage_matrix(t, relaxed=False)
        reach.append(np.arange(matrix.shape[0]) + np.count_nonzero(matrix <= bound, axis=1))
    link_ok = np.array([
        [ctx.link_table(by_precision[p], by_precision[q]).latency_ms <= bound for q in precisions]
        for p in precisions
    ])
    return _Bounded(
        kinds=kinds,
        limits=np.array([counts[t] for t in kinds]),
        kind_precision=np.array([precisions.index(ctx.precisions[t]) for t in kinds]),
        reach=tuple(reach),
        link_ok=link_ok,
    )


def _ends(starts: np.ndarray, reach: np.ndarray) -> np.ndarray:
    """Per row, the boundaries ``e`` with some start ``s < e <= reach[s]``; ``reach`` is
    monotone, so the largest reach among the starts before ``e`` decides."""
    furthest = np.maximum.accumulate(np.where(starts, reach, -1), axis=-1)
    ends = np.zeros(starts.shape, dtype=bool)
    ends[..., 1:] = furthest[..., :-1] >= np.arange(1, starts.shape[-1])
    return ends


def _levels(b: _Bounded) -> list[_Level]:
    size = len(b.reach[0])
    start = np.zeros((1, size), dtype=bool)
    start[0, 0] = True
    first = _Level(np.zeros((1, len(b.kinds)), dtype=np.int64), np.zeros(1, dtype=np.int64),
                   start)
    levels = [_step(b, first, from_start=True)]
    while levels[-1].used.shape[0]:
        levels.append(_step(b, levels[-1], from_start=False))
    return levels[:-1]


def _step(b: _Bounded, level: _Level, from_start: bool) -> _Level:
    """Every state one more stage on: each kind with a board left takes the next stage."""
    used, precision, ends = [], [], []
    for t in range(len(b.kinds)):
        free = level.used[:, t] < b.limits[t]
        for p in np.unique(level.precision[free]):
            rows = free & (level.precision == p)
            starts = level.ends[rows]
            if not from_start:
                starts = starts & b.link_ok[p, b.kind_precision[t]]
            reached = _ends(starts, b.reach[t])
            keep = reached.any(axis=1)
            more = level.used[rows][keep]
            more[:, t] += 1
            used.append(more)
            precision.append(np.full(len(more), b.kind_precision[t]))
            ends.append(reached[keep])
    if not used:
        return _Level(level.used[:0], level.precision[:0], level.ends[:0])
    return _merged(np.concatenate(used), np.concatenate(precision), np.concatenate(ends))


def _merged(used: np.ndarray, precision: np.ndarray, ends: np.ndarray) -> _Level:
    """One row per state: rows with the same boards used and last precision are or-ed."""
    keys = np.column_stack([used, precision])
    unique, inverse = np.unique(keys, axis=0, return_inverse=True)
    order = np.argsort(inverse.ravel(), kind="stable")
    bounds = np.searchsorted(inverse.ravel()[order], np.arange(len(unique)))
    return _Level(unique[:, :-1], unique[:, -1], np.logical_or.reduceat(ends[order], bounds))


def _feasible(levels: Sequence[_Level], allowed: Sequence[int]) -> bool:
    return any(level.ends[:, -1].any() for depth, level in enumerate(levels, 1)
               if depth in allowed)


def _trace(b: _Bounded, allowed: Sequence[int]) -> tuple[Order, Cuts]:
    """One order and cuts within the bound, fewest stages first, walked back level by level."""
    levels = _levels(b)
    depth = next(d for d, level in enumerate(levels, 1)
                 if d in allowed and level.ends[:, -1].any())
    row = int(np.flatnonzero(levels[depth - 1].ends[:, -1])[0])
    end = len(b.reach[0]) - 1
    order: list[str] = []
    cuts: list[int] = []
    used, precision = levels[depth - 1].used[row], levels[depth - 1].precision[row]
    for d in range(depth, 0, -1):
        for t in range(len(b.kinds)):
            if not used[t] or b.kind_precision[t] != precision:
                continue
            before = used.copy()
            before[t] -= 1
            found = _stage_start(b, levels[d - 2] if d > 1 else None, before, t, end)
            if found is not None:
                order.append(b.kinds[t])
                start, precision = found
                if d > 1:
                    cuts.append(start)
                used, end = before, start
                break
        else:  # the search said the bound is reachable, so some stage must lead here
            raise AssertionError(f"no stage ends at boundary {end}")
    return tuple(reversed(order)), tuple(reversed(cuts))


def _stage_start(b: _Bounded, level: _Level | None, before, kind: int, end: int):
    """``(start, precision before)`` of a stage on ``kind`` that ends at ``end`` after a state
    with ``before`` boards used (the first stage starts at 0), or None."""
    reach = b.reach[kind]
    if level is None:
        return (0, -1) if reach[0] >= end else None
    for row in np.flatnonzero((level.used == before).all(axis=1)):
        p = level.precision[row]
        starts = np.flatnonzero(level.ends[row] & b.link_ok[p, b.kind_precision[kind]])
        fits = starts[(starts < end) & (reach[starts] >= end)]
        if fits.size:
            return int(fits[0]), int(p)
    return None
