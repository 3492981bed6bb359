"""Strips re-sized on measured tile times: EdgeCI's balancing step on the boards' real speed.

The planner sizes a run's strips on predicted per-layer costs, and a prediction is off in ways
that differ per board (a capped board, a cache, the root's own scatter and gather on its core).
Once the plan is exported, its stages are timed on their boards and one frame is played from
those times (:func:`hwsched.tiles.timing.plan_frame_schedule`): each tile's strip reaches the
gather at a *finish* time holding everything on its path — on the root, the scatter's sends to
every tile before its own tile can start (one core); elsewhere, the hops and the wire.

Each tile's finish is then modelled as a function of its strip: the part that is not its
compute held fixed, its compute the timed ms scaled by the planner's predicted compute of the
new strip over that of the current one (halo included, so the shape of the cost survives a
board whose speed was mispredicted). The strips that minimise the latest finish are found
exactly (:func:`~hwsched.tiles.planning.optimal_rows`); the caller re-exports and times again.
Given each strip's message bytes and the runner's hand-off cost, the finishes also follow the
messages a new split resizes, as the planner charges them (:func:`measured_paths`): a tile's
own hops per byte, the root's sends before it (the root's own tile waits for all of them),
and the strips are then the least latest arrival
(:func:`~hwsched.tiles.planning.optimal_path_rows`: exact on two tiles, or up to
``EXACT_PATH_ROWS`` rows; beyond, EdgeCI's moves on those paths).

>>> tiles = (MeasuredTile(Span(0, 6), compute_ms=6.0, finish_ms=8.0),
...          MeasuredTile(Span(6, 12), compute_ms=12.0, finish_ms=14.0))
>>> rebalanced_rows(tiles, lambda k, rows: float(rows.size))  # 1 ms/row vs 2 ms/row
(8, 4)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hwsched.costs.runtime import RuntimeCost
from hwsched.tiles.planning import (
    SplitPaths,
    TileLink,
    TimeFn,
    charge_runtime,
    optimal_path_rows,
    optimal_rows,
    run_paths_ms,
)
from hwsched.tiles.receptive import Span
from hwsched.tiles.timing import FrameSchedule

#: ``predicted(k, rows)``: the planner's compute ms of strip ``rows`` on tile ``k``'s board.
PredictFn = Callable[[int, Span], float]
#: ``messages(k, rows)``: bytes of tile ``k``'s scatter and gather messages with strip ``rows``.
MessagesFn = Callable[[int, Span], tuple[int, int]]


@dataclass(frozen=True)
class MeasuredTile:
    """One tile of a run as timed: its strip, its stage's compute on its board, and when its
    strip reaches the gather in the played frame (ms from the frame's start)."""

    rows: Span
    compute_ms: float
    finish_ms: float


def measured_time_fn(tiles: Sequence[MeasuredTile], predicted: PredictFn) -> TimeFn:
    """``time(k, rows)``: tile ``k``'s finish with strip ``rows`` (module docstring); it does
    not decrease as a strip grows when ``predicted`` does not."""

    def time(k: int, rows: Span) -> float:
        tile = tiles[k]
        now = predicted(k, tile.rows)
        scale = tile.compute_ms / now if now > 0 else 1.0
        return tile.finish_ms - tile.compute_ms + predicted(k, rows) * scale

    return time


def rebalanced_rows(tiles: Sequence[MeasuredTile], predicted: PredictFn,
                    messages: MessagesFn | None = None,
                    runtime: RuntimeCost | None = None) -> tuple[int, ...]:
    """Rows per tile (same order, covering the same rows) that minimise the latest finish;
    with ``messages`` and ``runtime``, the finishes follow the resized messages too
    (:func:`measured_paths`)."""
    total = tiles[-1].rows.stop - tiles[0].rows.start
    rows = optimal_rows(measured_time_fn(tiles, predicted), total, len(tiles))
    if messages is None or runtime is None:
        return rows
    return optimal_path_rows(measured_paths(tiles, predicted, messages, runtime), total,
                             len(tiles), (rows, tuple(t.rows.size for t in tiles)))


def measured_paths(tiles: Sequence[MeasuredTile], predicted: PredictFn, messages: MessagesFn,
                   runtime: RuntimeCost) -> SplitPaths:
    """The run's paths for any strips, from its timed finishes: each tile's finish less what
    its messages cost it as timed (the root's sends before its own, its own hops' per-byte
    ends and wire: the planner's :func:`~hwsched.tiles.planning.run_paths_ms`), plus its
    compute scaled as :func:`measured_time_fn` and what the new strips' messages cost. Exact
    for the frame :func:`~hwsched.tiles.timing.frame_schedule` plays with no wire between the
    root's stages (the planner's rule)."""
    wire = runtime.wire_ms(1) - runtime.wire_ms(0)
    _, link = charge_runtime((), TileLink(1.0 / wire if wire > 0 else math.inf), runtime)
    timed = [messages(k, t.rows) for k, t in enumerate(tiles)]
    coupling = run_paths_ms([0.0] * len(tiles), timed, link, 0.0, None)
    time = measured_time_fn(tiles, predicted)

    def own_bytes_ms(k: int, sizes: tuple[int, int]) -> float:
        return link.local_bytes_ms(sum(sizes)) if k == 0 else sum(sizes) / link.bytes_per_ms

    def terms(k: int, rows: Span) -> tuple[float, tuple[int, int]]:
        sizes = messages(k, rows)
        return (time(k, rows) - coupling[k] + own_bytes_ms(k, sizes)
                - own_bytes_ms(k, timed[k]), sizes)

    return SplitPaths(terms, link, 0.0, None)


def finish_spread(tiles: Sequence[MeasuredTile]) -> float:
    """How far apart a run's tiles finish, as a share of its longest compute: 0 when every
    strip reaches the gather at once.

    >>> finish_spread((MeasuredTile(Span(0, 1), 10.0, 20.0), MeasuredTile(Span(1, 2), 8.0, 19.0)))
    0.1
    """
    finishes = [t.finish_ms for t in tiles]
    longest = max(t.compute_ms for t in tiles)
    return (max(finishes) - min(finishes)) / longest if longest > 0 else 0.0


def measured_runs(tile_runs: Sequence[Mapping[str, Any]], links: Sequence[tuple[int, int]],
                  stage_ms: Sequence[float], schedule: FrameSchedule
                  ) -> tuple[tuple[MeasuredTile, ...] | None, ...]:
    """Per run record of an exported plan (``plan.tiles``): its tiles as timed, or None for an
    output-channel split. ``links``: ``(from stage, to stage)`` per link of the plan, in the
    order of ``schedule.arrival_ms``; a tile finishes when its last message to the run's
    gather has arrived."""
    runs = []
    for run in tile_runs:
        if "tiles" not in run:
            runs.append(None)
            continue
        tiles = []
        for tile in run["tiles"]:
            stage = tile["stage"]
            finish = max((schedule.arrival_ms[i] for i, (frm, to) in enumerate(links)
                          if frm == stage and to == run["gather_stage"]), default=math.nan)
            tiles.append(MeasuredTile(Span(*tile["rows"]), stage_ms[stage], finish))
        runs.append(tuple(tiles))
    return tuple(runs)


__all__ = ["MeasuredTile", "finish_spread", "measured_paths", "measured_runs",
           "measured_time_fn", "rebalanced_rows"]
