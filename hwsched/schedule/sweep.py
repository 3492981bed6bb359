"""The acceleration region: over which link bandwidths does splitting beat one board?

Feltin et al. (2023) call the set of conditions under which a pipelined split out-runs the best
single device the *acceleration region*. Stage times do not depend on the link; a link's time
only falls as its bandwidth grows, so the best split's throughput is non-decreasing in
bandwidth and the region is one interval ``(edge, inf)``. :func:`sweep_bandwidth` ranks the
splits (by throughput, with :func:`~hwsched.schedule.rank_splits`) at each bandwidth of a log
grid and finds the edge by bisection on the same exact ranking, so the edge does not depend on
how coarse the grid is.

For two boards, an ideal link (bandwidth only) and a cut that leaves both stages faster than
the best single board (time ``T* = C / K*``), the split pays exactly when its ``s`` crossing
bytes travel in less than ``T*``: the edge is ``min over cuts of 8 s / T*`` bits per second,
Feltin's ``s K* / C``; the tests check the bisection against it.

Inside the region the best *split* changes with bandwidth too: a slow link favours the cut whose
crossing tensors are smallest, a fast one the cut that balances the stages. For an adaptive
plan (``export --adaptive K``) :func:`sweep_winners` lists the distinct best splits of fixed
boards over a grid, and :func:`split_ranges` says where each of a chosen set wins: a split's
period is ``max(slowest stage, link time)`` with a link time that only falls with bandwidth, so
the winner changes at a few bandwidths, found by the same bisection. A split may win two
separate ranges (one with more crossing messages but fewer bytes), so ranges are not assumed
to be one per split.

>>> from hwsched.schedule.synthetic import synthetic_graph
>>> sweep = sweep_bandwidth(synthetic_graph(30, seed=2), ["rpi4", "jetson_nano"], "gige",
...                         1.0, 1000.0, points=4)
>>> [round(p.bandwidth_mbps) for p in sweep.points]
[1, 10, 100, 1000]
>>> all(a.throughput_ips <= b.throughput_ips for a, b in zip(sweep.points, sweep.points[1:]))
True
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from hwsched.costs.runtime import RuntimeCost
from hwsched.errors import ScheduleError
from hwsched.hardware import Link, Platform, load_link
from hwsched.ir import LayerGraph
from hwsched.schedule.api import rank_splits
from hwsched.schedule.records import Candidate, Ranking

BPS_PER_MBPS = 1e6
#: The edge is bracketed to this relative width by bisection.
EDGE_RTOL = 1e-4
#: Steps of x10 tried beyond the sweep's range before the edge is declared absent.
MAX_DECADES = 12
DEFAULT_POINTS = 13


@dataclass(frozen=True)
class SweepPoint:
    """The best split at one link bandwidth (``best_cut_positions`` empty: one board wins)."""

    bandwidth_mbps: float
    best_cut_positions: tuple[int, ...]
    throughput_ips: float
    #: Best throughput (split or single board) over the best single board's.
    gain: float
    best_split_throughput_ips: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "bandwidth_mbps": self.bandwidth_mbps,
            "best_cut_positions": list(self.best_cut_positions),
            "throughput_ips": self.throughput_ips,
            "gain": self.gain,
            "best_split_throughput_ips": self.best_split_throughput_ips,
        }


@dataclass(frozen=True)
class BandwidthSweep:
    link: str
    points: tuple[SweepPoint, ...]
    baseline_throughput_ips: float
    best_baseline: str
    #: Lowest bandwidth at which some split beats every single board (None: none does).
    edge_mbps: float | None
    #: The split that first pays at the edge.
    edge_cut_positions: tuple[int, ...]

    def edge_dict(self) -> dict[str, Any]:
        return {
            "link": self.link,
            "edge_mbps": self.edge_mbps,
            "edge_cut_positions": list(self.edge_cut_positions),
            "baseline_throughput_ips": self.baseline_throughput_ips,
            "best_baseline": self.best_baseline,
            "relative_tolerance": EDGE_RTOL,
        }


def region_sentence(edge_mbps: float | None) -> str:
    """What the region comes down to, for a user (the report shows it above the fold).

    >>> region_sentence(37.26), region_sentence(1137.4)
    ('splitting pays above 37.3 Mbit/s', 'splitting pays above 1,137 Mbit/s')
    """
    if edge_mbps is None:
        return "splitting never beats one board at any bandwidth"
    shown = f"{edge_mbps:,.0f}" if edge_mbps >= 100 else f"{edge_mbps:.3g}"
    return f"splitting pays above {shown} Mbit/s"


def log_grid(lo_mbps: float, hi_mbps: float, points: int) -> tuple[float, ...]:
    """``points`` bandwidths spaced evenly in log between ``lo`` and ``hi`` (both included).

    >>> log_grid(1, 100, 3)
    (1.0, 10.0, 100.0)
    """
    if not (0 < lo_mbps <= hi_mbps and math.isfinite(hi_mbps)):
        raise ScheduleError(f"bandwidth range {lo_mbps}:{hi_mbps} Mbit/s must have 0 < LO <= HI")
    if points < 1 or (points == 1 and lo_mbps != hi_mbps):
        raise ScheduleError(f"a sweep from {lo_mbps} to {hi_mbps} Mbit/s needs >= 2 points")
    if points == 1:
        return (float(lo_mbps),)
    step = math.log(hi_mbps / lo_mbps) / (points - 1)
    grid = [lo_mbps * math.exp(i * step) for i in range(points)]
    return tuple(float(f"{b:.12g}") for b in grid)


def parse_range(text: str) -> tuple[float, float, int]:
    """``LO:HI[:N]`` in Mbit/s, as the CLI takes it.

    >>> parse_range("10:1000:5"), parse_range("1:100")
    ((10.0, 1000.0, 5), (1.0, 100.0, 13))
    """
    parts = text.split(":")
    try:
        if len(parts) not in (2, 3):
            raise ValueError
        lo, hi = float(parts[0]), float(parts[1])
        points = int(parts[2]) if len(parts) == 3 else DEFAULT_POINTS
    except ValueError:
        raise ScheduleError(
            f"--sweep-bandwidth {text!r}: expected LO:HI[:N] in Mbit/s, e.g. 1:1000:13"
        ) from None
    try:
        log_grid(lo, hi, points)
    except ScheduleError as error:
        raise ScheduleError(f"--sweep-bandwidth {text!r}: {error}") from None
    return lo, hi, points


def with_bandwidth(link: Link, bandwidth_mbps: float) -> Link:
    """The same link at another bandwidth (framing, latency and power unchanged)."""
    return replace(link, bandwidth_bps=bandwidth_mbps * BPS_PER_MBPS)


def _rank(graph, platforms, link: Link, bandwidth_mbps: float, options,
          runtime: RuntimeCost | None = None) -> Ranking:
    return rank_splits(graph, platforms, with_bandwidth(link, bandwidth_mbps),
                       objective="throughput", top=1, runtime=runtime, **options)


def _best_split(ranking: Ranking) -> Candidate | None:
    best = ranking.best
    return best if best is not None and best.feasible else None


def _baseline(ranking: Ranking) -> Candidate:
    feasible = [b for b in ranking.baselines if b.feasible]
    if not feasible:
        raise ScheduleError(
            f"no single board can run {ranking.model!r}: the acceleration region compares "
            "splits against one board"
        )
    return min(feasible, key=lambda b: (b.period_ms, b.assignment))


def _pays(ranking: Ranking) -> Candidate | None:
    """The best split if it is strictly faster than every single board, else None."""
    split = _best_split(ranking)
    base = _baseline(ranking)
    return split if split is not None and split.period_ms < base.period_ms else None


def _point(ranking: Ranking, bandwidth_mbps: float) -> SweepPoint:
    base = _baseline(ranking)
    split = _best_split(ranking)
    split_ips = split.throughput_ips if split is not None else 0.0
    winner = _pays(ranking)
    best_ips = winner.throughput_ips if winner is not None else base.throughput_ips
    return SweepPoint(
        bandwidth_mbps=bandwidth_mbps,
        best_cut_positions=winner.cut_positions if winner is not None else (),
        throughput_ips=best_ips,
        gain=best_ips / base.throughput_ips,
        best_split_throughput_ips=split_ips,
    )


def _bracket(probe, grid: Sequence[float], paying: Sequence[bool]):
    """``(lo, hi)``: ``lo`` does not pay, ``hi`` does (None where none was found), widening by
    decades past the grid when every grid point pays or none does."""
    if any(paying) and not paying[0]:
        first = paying.index(True)
        return grid[first - 1], grid[first]
    if paying[0]:
        hi = grid[0]
        for _ in range(MAX_DECADES):
            if probe(hi / 10) is None:
                return hi / 10, hi
            hi /= 10
        return None, hi
    lo = grid[-1]
    for _ in range(MAX_DECADES):
        if probe(lo * 10) is not None:
            return lo, lo * 10
        lo *= 10
    return lo, None


def _find_edge(probe, grid: Sequence[float], paying: Sequence[bool]):
    """Bisect in log bandwidth between a point that does not pay and one that does; the
    region is one interval because the best split's throughput is monotone in bandwidth."""
    lo, hi = _bracket(probe, grid, paying)
    if hi is None:
        return None, None
    if lo is None:  # pays even at the smallest bandwidth tried
        return hi, probe(hi)
    while hi / lo > 1 + EDGE_RTOL:
        mid = math.sqrt(lo * hi)
        lo, hi = (lo, mid) if probe(mid) is not None else (mid, hi)
    return hi, probe(hi)


def sweep_bandwidth(
    graph: LayerGraph,
    platforms: Sequence[str | Platform],
    link: str | Link,
    lo_mbps: float,
    hi_mbps: float,
    points: int = DEFAULT_POINTS,
    runtime: RuntimeCost | None = None,
    **options: Any,
) -> BandwidthSweep:
    """Best split and its gain at each bandwidth of a log grid, and the region's edge.

    ``options`` are :func:`rank_splits`' cost options (``profile``, ``precision``,
    ``transfer_model``, ...); the objective is throughput. The edge is bracketed to a relative
    width of ``EDGE_RTOL`` and reported at the bracket's paying end; ``edge_mbps`` is None when
    no split beats one board at any bandwidth up to ``MAX_DECADES`` decades above ``hi``.
    With ``runtime`` every split and single board also carries the runner's per-frame cost,
    charged inside the search (:mod:`hwsched.schedule.handoff`) — it does not depend on the
    link, so the region stays one interval.
    """
    if len(platforms) < 2:
        raise ScheduleError("a bandwidth sweep needs at least two platforms to split over")
    base_link = load_link(link)
    grid = log_grid(lo_mbps, hi_mbps, points)
    rankings = [_rank(graph, platforms, base_link, b, options, runtime) for b in grid]
    sweep_points = tuple(_point(r, b) for r, b in zip(rankings, grid, strict=True))

    def probe(bandwidth_mbps: float) -> Candidate | None:
        return _pays(_rank(graph, platforms, base_link, bandwidth_mbps, options, runtime))

    edge, edge_split = _find_edge(probe, grid, [bool(p.best_cut_positions) for p in sweep_points])
    base = _baseline(rankings[0])
    return BandwidthSweep(
        link=base_link.name,
        points=sweep_points,
        baseline_throughput_ips=base.throughput_ips,
        best_baseline=base.assignment[0],
        edge_mbps=edge,
        edge_cut_positions=edge_split.cut_positions if edge_split is not None else (),
    )


# -- where each split wins (the adaptive export's bandwidth ranges) ----------------------------
#: Bisection steps past which a boundary search between two grid points gives up refining.
MAX_BOUNDARY_STEPS = 64
#: The default sweep of ``export --adaptive``: this many decades either side of the plan's link.
ADAPTIVE_DECADES = 2


@dataclass(frozen=True)
class SplitRange:
    """Where one split of fixed boards is the best of a set: ``low <= bandwidth < high``
    (Mbit/s; the lowest range starts at 0, the highest ends at ``inf``)."""

    cut_positions: tuple[int, ...]
    bandwidth_mbps_low: float
    bandwidth_mbps_high: float

    def contains(self, bandwidth_mbps: float) -> bool:
        return self.bandwidth_mbps_low <= bandwidth_mbps < self.bandwidth_mbps_high


def default_adaptive_range(link: str | Link) -> tuple[float, float, int]:
    """``ADAPTIVE_DECADES`` decades either side of the link's own bandwidth, on the sweep's
    default number of points (so the nominal bandwidth is the middle grid point).

    >>> default_adaptive_range("gige")
    (10.0, 100000.0, 13)
    """
    nominal = load_link(link).bandwidth_bps / BPS_PER_MBPS
    span = 10.0 ** ADAPTIVE_DECADES
    return nominal / span, nominal * span, DEFAULT_POINTS


def sweep_winners(
    graph: LayerGraph,
    platforms: Sequence[str | Platform],
    link: str | Link,
    grid: Sequence[float],
    **options: Any,
) -> tuple[tuple[tuple[int, ...], int], ...]:
    """The distinct best splits over *every* board of ``platforms`` in the given order, one
    per grid bandwidth, each with the number of grid points it wins; most points first, ties
    broken by the lower cut positions (deterministic). Unlike :func:`sweep_bandwidth` a split
    is reported even where one board alone would be faster: an adaptive plan switches between
    splits of the same boards."""
    base_link = load_link(link)
    won: dict[tuple[int, ...], int] = {}
    for bandwidth in grid:
        best = rank_splits(graph, platforms, with_bandwidth(base_link, bandwidth),
                           objective="throughput", top=1, stages=len(platforms), **options).best
        if best is not None:
            won[best.cut_positions] = won.get(best.cut_positions, 0) + 1
    return tuple(sorted(won.items(), key=lambda item: (-item[1], item[0])))


def range_shares(ranges: Sequence[SplitRange], lo_mbps: float,
                 hi_mbps: float) -> dict[tuple[int, ...], float]:
    """The fraction of ``[lo, hi]`` (in log bandwidth, as the sweep's grid spaces it) that each
    split's ranges cover: how much of the swept range it wins.

    >>> shares = range_shares([SplitRange((5,), 0.0, 10.0), SplitRange((9,), 10.0, math.inf)],
    ...                       1, 1000)
    >>> {split: round(share, 3) for split, share in shares.items()}
    {(5,): 0.333, (9,): 0.667}
    """
    shares: dict[tuple[int, ...], float] = {}
    for r in ranges:
        if hi_mbps <= lo_mbps:
            share = 1.0 if r.contains(lo_mbps) else 0.0
        else:
            low, high = max(r.bandwidth_mbps_low, lo_mbps), min(r.bandwidth_mbps_high, hi_mbps)
            share = max(0.0, math.log(high / low) / math.log(hi_mbps / lo_mbps)) if high > low \
                else 0.0
        shares[r.cut_positions] = shares.get(r.cut_positions, 0.0) + share
    return shares


def choose_splits(
    first: Sequence[int], winners: Sequence[Sequence[int]], count: int,
    extra: Sequence[Sequence[int]] = (),
) -> tuple[tuple[int, ...], ...]:
    """``first``, then the winners in order until ``count`` distinct splits, then every split
    of ``extra`` not chosen yet (a user's own candidates are always kept).

    >>> choose_splits((10,), [(20,), (10,), (17,)], 2, extra=[(17,), (20,)])
    ((10,), (20,), (17,))
    """
    chosen = [tuple(first)]
    for split in map(tuple, winners):
        if len(chosen) >= count:
            break
        if split not in chosen:
            chosen.append(split)
    chosen.extend(s for s in dict.fromkeys(map(tuple, extra)) if s not in chosen)
    return tuple(chosen)


def split_ranges(
    graph: LayerGraph,
    platforms: Sequence[str | Platform],
    link: str | Link,
    splits: Sequence[Sequence[int]],
    grid: Sequence[float],
    **options: Any,
) -> tuple[SplitRange, ...]:
    """The bandwidth ranges where each of ``splits`` (cut positions over every board of
    ``platforms`` in order) has the highest predicted throughput among them.

    Exact at every grid bandwidth (ties go to the earlier split in ``splits``); between two
    grid points whose winners differ, the change is found by bisection to ``EDGE_RTOL``
    (several changes are followed one after another). Below the grid the lowest winner and
    above it the highest is kept: those are the splits the plan has there. A split that wins
    twice, apart, gets two ranges; one that never wins gets none. ``options`` are
    :func:`~hwsched.schedule.evaluate`'s cost options.
    """
    if not splits or not grid:
        raise ScheduleError("split ranges need at least one split and one bandwidth")
    winner = _winner_at(graph, platforms, link, [tuple(s) for s in splits], options)
    ordered = sorted(grid)
    changes = [(0.0, winner(ordered[0]))]
    for lo, hi in itertools.pairwise(ordered):
        changes.extend(_changes_between(winner, lo, hi, changes[-1][1]))
    ends = [start for start, _ in changes[1:]] + [math.inf]
    return tuple(SplitRange(tuple(splits[w]), start, end)
                 for (start, w), end in zip(changes, ends, strict=True))


def _winner_at(graph, platforms, link, splits, options):
    """``bandwidth -> index of the best split``: the stage tables are built once; only the
    link (the one part that depends on bandwidth) changes per call."""
    from hwsched.hardware import load_platform
    from hwsched.schedule.context import CostOptions, build_context

    loaded = [load_platform(p) for p in platforms]
    ctx, _ = build_context(graph, loaded, link, CostOptions(**options))
    order = tuple(p.name for p in loaded)
    base_link = ctx.link

    def winner(bandwidth_mbps: float) -> int:
        at = replace(ctx, link=with_bandwidth(base_link, bandwidth_mbps), _links={})
        costs = [at.evaluate(order, cuts) for cuts in splits]
        return min(range(len(costs)),
                   key=lambda i: (not costs[i].feasible, costs[i].period_ms, i))

    return winner


def _changes_between(winner, lo: float, hi: float, current: int) -> list[tuple[float, int]]:
    """``(bandwidth, new winner)`` for each change of winner found in ``(lo, hi]``."""
    changes: list[tuple[float, int]] = []
    target = winner(hi)
    for _ in range(MAX_BOUNDARY_STEPS):
        if current == target:
            break
        low, high = lo, hi
        while high / low > 1 + EDGE_RTOL:
            mid = math.sqrt(low * high)
            low, high = (mid, high) if winner(mid) == current else (low, mid)
        current = winner(high)
        changes.append((high, current))
        lo = high
    return changes
