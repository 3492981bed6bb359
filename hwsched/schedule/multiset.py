"""Exact searches over the multiset of boards still unused, for ``assign="auto"`` when there are
too many distinct orders to search one by one (16 boards of 4 kinds: 63 million orders).

A state is the number of boards used of each kind plus the precision of the last stage (the
link to the next stage depends only on the two precisions); every state after ``d`` stages is
one row of a level, and a level follows from the one before with a few array operations per
kind. States number ``prod(n_i + 1) x precisions``, not ``N!``.

* :func:`min_bottleneck_order` (throughput): binary search over the bottleneck, each test a
  reachability sweep in ``O(L)`` per state and kind.
* :func:`min_latency_order` (latency): the least sum of stage and link times per state and end
  boundary; a stage is ``prefix[end] - prefix[start] + overhead`` on a contiguous window of
  feasible starts, so a range-minimum table gives each state's next row in ``O(L log L)``
  (boards that stream parameters past a cache fall back to ``O(L^2)`` per state).

Energy has no such search: its period term depends on which boards end up used.

With the runner's hand-off charged (``Context.runtime``) a stage from ``b`` to ``e`` also
costs ``into[b] + out_of[e]`` (:func:`~hwsched.schedule.handoff.handoff_vectors`), and the
bytes at ``e`` are not monotone in ``e``: the bottleneck search's feasible ends are then no
interval, so it reads the full stage matrices (``O(L^2)`` per state and kind instead of
``O(L)``); the latency search adds the two terms to its prefix differences.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from hwsched.schedule.context import Context
from hwsched.schedule.handoff import handoff_vectors
from hwsched.schedule.tables import INF

Order = tuple[str, ...]
Cuts = tuple[int, ...]


# -- exact minimum bottleneck over the multiset of unused boards ------------------------------
@dataclass(frozen=True, eq=False)
class _Level:
    """Every state after the same number of stages, one row each: boards used per kind, the
    precision (index) of the last stage, and what is known per end boundary."""

    used: np.ndarray  # (states, kinds) int
    precision: np.ndarray  # (states,) int
    #: (states, L + 1): the boundaries the last stage can end at (bool) or the least latency
    #: of ending there (float, inf where it cannot)
    per_end: np.ndarray


@dataclass(frozen=True, eq=False)
class _Bounded:
    """The board multiset and every cost table, tested against one bound ``T``."""

    kinds: tuple[str, ...]
    limits: np.ndarray  # boards per kind
    kind_precision: np.ndarray  # precision index per kind
    #: per kind: last boundary a stage from b can end at, or (hand-off charged) a
    #: (L + 1, L + 1) bool matrix of the stages within the bound
    reach: tuple[np.ndarray, ...]
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
        if ctx.runtime is not None:  # ends within the bound need not be contiguous
            reach.append(matrix <= bound)
            continue
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
    monotone, so the largest reach among the starts before ``e`` decides. A matrix ``reach``
    holds every stage ``[s, e)`` within the bound."""
    if reach.ndim == 2:
        return (starts.astype(np.float32) @ reach.astype(np.float32)) > 0
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
            starts = level.per_end[rows]
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
        return _Level(level.used[:0], level.precision[:0], level.per_end[:0])
    return _merged(np.concatenate(used), np.concatenate(precision), np.concatenate(ends))


def _merged(used: np.ndarray, precision: np.ndarray, rows: np.ndarray, reduce=np.logical_or):
    """One row per state: rows with the same boards used and last precision are combined
    (or-ed reachability, least values)."""
    keys = np.column_stack([used, precision])
    unique, inverse = np.unique(keys, axis=0, return_inverse=True)
    order = np.argsort(inverse.ravel(), kind="stable")
    bounds = np.searchsorted(inverse.ravel()[order], np.arange(len(unique)))
    return _Level(unique[:, :-1], unique[:, -1], reduce.reduceat(rows[order], bounds))


def _feasible(levels: Sequence[_Level], allowed: Sequence[int]) -> bool:
    return any(level.per_end[:, -1].any() for depth, level in enumerate(levels, 1)
               if depth in allowed)


def _trace(b: _Bounded, allowed: Sequence[int]) -> tuple[Order, Cuts]:
    """One order and cuts within the bound, fewest stages first, walked back level by level."""
    levels = _levels(b)
    depth = next(d for d, level in enumerate(levels, 1)
                 if d in allowed and level.per_end[:, -1].any())
    row = int(np.flatnonzero(levels[depth - 1].per_end[:, -1])[0])
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

    def within(starts: np.ndarray) -> np.ndarray:
        return reach[starts, end] if reach.ndim == 2 else (starts < end) & (reach[starts] >= end)

    if level is None:
        return (0, -1) if within(np.array([0]))[0] else None
    for row in np.flatnonzero((level.used == before).all(axis=1)):
        p = level.precision[row]
        starts = np.flatnonzero(level.per_end[row] & b.link_ok[p, b.kind_precision[kind]])
        fits = starts[within(starts)]
        if fits.size:
            return int(fits[0]), int(p)
    return None


# -- exact least latency over the multiset of unused boards ----------------------------------
@dataclass(frozen=True, eq=False)
class _Costs:
    """Per kind, how a stage's latency is read: a prefix difference over a window of feasible
    starts (``window_start[end]``), or, for a board streaming parameters past a cache, the
    full stage matrix."""

    kinds: tuple[str, ...]
    limits: np.ndarray
    kind_precision: np.ndarray
    link_ms: np.ndarray  # (precisions, precisions, L + 1), inf where not a cut
    prefix: tuple[np.ndarray, ...]  # latency prefix sums
    overhead: np.ndarray  # invoke overhead per stage
    #: per kind, the hand-off share of a stage starting / ending at each boundary (zeros
    #: without a runtime cost)
    into: tuple[np.ndarray, ...]
    out_of: tuple[np.ndarray, ...]
    window_start: tuple[np.ndarray | None, ...]
    matrix: tuple[np.ndarray, ...]


def min_latency_order(
    ctx: Context, counts: Mapping[str, int], stage_counts_allowed: Sequence[int]
) -> tuple[Order, Cuts] | None:
    """The order and cuts with the least pipeline latency (sum of stage and link times) over
    every distinct order of every allowed number of the boards (``None`` if none is
    feasible)."""
    costs = _latency_costs(ctx, counts)
    levels = _value_levels(costs)
    allowed = [d for d in stage_counts_allowed if d <= len(levels)]
    best = [(float(levels[d - 1].per_end[:, -1].min()), d) for d in allowed]
    if not best or min(best)[0] == INF:
        return None
    value, depth = min(best)
    return _trace_value(costs, levels, depth, value)


def _latency_costs(ctx: Context, counts: Mapping[str, int]) -> _Costs:
    kinds = tuple(counts)
    precisions = sorted({ctx.precisions[t] for t in kinds})
    by_precision = {p: next(t for t in kinds if ctx.precisions[t] == p) for p in precisions}
    link_ms = np.array([
        [ctx.link_table(by_precision[p], by_precision[q]).latency_ms for q in precisions]
        for p in precisions
    ])
    prefix, overhead, windows, matrices, into, out_of = [], [], [], [], [], []
    for t in kinds:
        table, matrix = ctx.tables[t], ctx.stage_matrix(t, relaxed=False)
        platform = table.platform
        separable = platform.param_cache_bytes is None or not platform.offchip_bandwidth_gbps
        feasible = np.isfinite(matrix)
        first = np.where(feasible.any(axis=0), np.argmax(feasible, axis=0), matrix.shape[0])
        prefix.append(table.lat_prefix)
        overhead.append(table.stage_overhead_ms)
        if ctx.runtime is None:
            into.append(np.zeros(matrix.shape[0]))
            out_of.append(np.zeros(matrix.shape[0]))
        else:  # as stage_matrix charges it: the bytes in the stage's own precision
            shares = handoff_vectors(ctx.graph, ctx.link_table(t, t).payload_bytes, ctx.runtime)
            into.append(shares[0])
            out_of.append(shares[1])
        windows.append(first if separable else None)
        matrices.append(matrix)
    return _Costs(kinds, np.array([counts[t] for t in kinds]),
                  np.array([precisions.index(ctx.precisions[t]) for t in kinds]), link_ms,
                  tuple(prefix), np.array(overhead), tuple(into), tuple(out_of), tuple(windows),
                  tuple(matrices))


def _enter_stage(c: _Costs, t: int, entering: np.ndarray) -> np.ndarray:
    """Per row, the least latency of ending a stage on kind ``t`` at each boundary, given the
    latency ``entering`` of starting it at each boundary."""
    if c.window_start[t] is None:
        return np.stack([(row[:, None] + c.matrix[t]).min(axis=0) for row in entering])
    # a stage from b to e costs lat[e] - lat[b] + overhead + into[b] + out_of[e]
    shifted = entering - c.prefix[t] + c.into[t]
    ends = np.arange(entering.shape[1])
    low = c.window_start[t]
    ok = low < ends
    out = np.full(entering.shape, INF)
    out[:, ok] = _range_min(shifted, low[ok], ends[ok] - 1) + _end_term(c, t)[ok]
    return out


def _end_term(c: _Costs, t: int) -> np.ndarray:
    """The part of a stage's latency on kind ``t`` that depends on its end boundary only."""
    return c.prefix[t] + c.overhead[t] + c.out_of[t]


def _range_min(values: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """``min(values[:, low_j:high_j + 1])`` for every ``j`` (a sparse table: ``log L`` levels,
    then two look-ups per query)."""
    table = [values]
    while 2 ** len(table) <= values.shape[1]:
        half = 2 ** (len(table) - 1)
        table.append(np.minimum(table[-1][:, :-half], table[-1][:, half:]))
    span = np.floor(np.log2(high - low + 1)).astype(int)
    out = np.empty((values.shape[0], len(low)))
    for k in np.unique(span):
        j = span == k
        out[:, j] = np.minimum(table[k][:, low[j]], table[k][:, high[j] - 2**k + 1])
    return out


def _value_levels(c: _Costs) -> list[_Level]:
    size = len(c.prefix[0])
    start = np.full((1, size), INF)
    start[0, 0] = 0.0
    level = _Level(np.zeros((1, len(c.kinds)), dtype=np.int64), np.zeros(1, dtype=np.int64),
                   start)
    levels = []
    while True:
        level = _value_step(c, level, from_start=not levels)
        if not level.used.shape[0]:
            return levels
        levels.append(level)


def _value_step(c: _Costs, level: _Level, from_start: bool) -> _Level:
    used, precision, values = [], [], []
    for t in range(len(c.kinds)):
        free = level.used[:, t] < c.limits[t]
        for p in np.unique(level.precision[free]):
            rows = free & (level.precision == p)
            entering = level.per_end[rows]
            if not from_start:
                entering = entering + c.link_ms[p, c.kind_precision[t]]
            reached = _enter_stage(c, t, entering)
            keep = np.isfinite(reached).any(axis=1)
            more = level.used[rows][keep]
            more[:, t] += 1
            used.append(more)
            precision.append(np.full(len(more), c.kind_precision[t]))
            values.append(reached[keep])
    if not used or not sum(len(u) for u in used):
        return _Level(level.used[:0], level.precision[:0], level.per_end[:0])
    return _merged(np.concatenate(used), np.concatenate(precision), np.concatenate(values),
                   reduce=np.minimum)


def _trace_value(c: _Costs, levels: Sequence[_Level], depth: int, value: float):
    """Walk back from the best final state: at each level, a state and start whose stage
    reproduces the value exactly (the same arithmetic as the forward step)."""
    level = levels[depth - 1]
    row = int(np.flatnonzero(level.per_end[:, -1] == value)[0])
    used, precision, end = level.used[row], level.precision[row], len(c.prefix[0]) - 1
    order: list[str] = []
    cuts: list[int] = []
    for d in range(depth, 0, -1):
        step = _value_stage_start(c, levels[d - 2] if d > 1 else None, used, precision, end,
                                  value)
        if step is None:  # the forward pass reached this value, so some stage leads here
            raise AssertionError(f"no stage ends at boundary {end} with {value} ms")
        t, start, before, precision, value = step
        order.append(c.kinds[t])
        if d > 1:
            cuts.append(start)
        used, end = before, start
    return tuple(reversed(order)), tuple(reversed(cuts))


def _value_stage_start(c: _Costs, level: _Level | None, used, precision, end, value):
    """``(kind, start, used before, precision before, value before)`` of the last stage."""
    for t in range(len(c.kinds)):
        if not used[t] or c.kind_precision[t] != precision:
            continue
        before = used.copy()
        before[t] -= 1
        if level is None:
            first = np.full((1, len(c.prefix[0])), INF)
            first[0, 0] = 0.0
            candidates = [(first[0], -1, first[0])]
        else:
            candidates = [
                (level.per_end[r] + c.link_ms[level.precision[r], c.kind_precision[t]],
                 int(level.precision[r]), level.per_end[r])
                for r in np.flatnonzero((level.used == before).all(axis=1))
            ]
        for entering, p, own in candidates:
            reached = _enter_stage(c, t, entering[None, :])[0]
            if reached[end] != value:
                continue
            start = _start_of(c, t, entering, end, value)
            return t, start, before, p, float(own[start])
    return None


def _start_of(c: _Costs, t: int, entering: np.ndarray, end: int, value: float) -> int:
    """The first start whose stage on ``t`` to ``end`` gives exactly ``value``."""
    if c.window_start[t] is None:
        totals = entering + c.matrix[t][:, end]
    else:
        shifted = entering - c.prefix[t] + c.into[t]
        totals = np.full(len(entering), INF)
        window = slice(c.window_start[t][end], end)
        totals[window] = shifted[window] + _end_term(c, t)[end]
    return int(np.flatnonzero(totals == value)[0])
