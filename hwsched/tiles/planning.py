"""Costs of a tiled run over boards, strip sizing, and the DP that chooses fused runs.

Model (one frame, the latency objective; EdgeCI's "a·FLOPs + b + bytes / bandwidth"):

* boards are ordered; board 0 is the *root*: it runs every layer outside tiled runs, scatters
  each run's input regions and gathers the strips (the issue's arrangement);
* a tile on board ``k`` costs ``overhead_ms[k]`` + ``hop_ms[k]`` + Σ over the run's layers of
  the board's predicted latency of the whole layer × the fraction of the layer's output
  positions the tile computes (halo included) + for ``k > 0`` two link messages (scatter of
  its input regions, gather of its output strip): ``2 · latency_ms + bytes / bytes_per_ms``.
  The link is assumed switched and full-duplex per peer, so the tiles' transfers overlap;
* the root's own tile also pays ``root_peer_ms`` per other tile of its run: the root's ends of
  that tile's scatter and gather messages run on the root's core, before or beside its tile
  (a runner's per-message cost; 0 for a link model without one);
* a tiled run costs its slowest tile; the plan's latency is the root's layers plus its runs;
* a dense or 1×1 layer may instead be split by output channels (AutoDiCE): part ``k`` on
  board ``k`` costs its share of the layer plus, off the root, the whole input and its slice
  of the output over the link.

Strips are full-width row bands in board order. :func:`proportional_rows` sizes them by the
boards' predicted speed, :func:`balance_rows` then moves rows one at a time from the slowest to
the fastest board while that lowers the slowest time (EdgeCI), and :func:`optimal_rows` finds
the exact min–max partition: a greedy fill and a bisection over times give a bound, and a
search over the strips' ends that stops a board's strip once it alone reaches the best time
so far proves or improves it (the greedy alone is not exact: a middle strip near the top
border has its halo clipped, so there a later start can be slower).

>>> proportional_rows(10, [1.0, 1.0, 2.0])
(3, 2, 5)
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING

import numpy as np

from hwsched.costs.latency import LayerLatencies, roofline
from hwsched.costs.transfer import US_PER_MS
from hwsched.errors import TilingError
from hwsched.hardware import Link, Platform
from hwsched.ir import LayerGraph
from hwsched.tiles.receptive import (
    ChannelSlice,
    FusedRun,
    Region,
    Span,
    can_split_channels,
    channel_split,
    describe_run,
    is_spatial,
    last_uses,
    layer_tile_macs,
    needed_region,
    region_bytes,
    spatial_runs,
    walk_back,
)
from hwsched.units import MS_PER_S

if TYPE_CHECKING:
    from hwsched.costs.runtime import RuntimeCost

#: Relative precision of the bisection in :func:`optimal_rows`.
BISECTION_REL_TOL = 1e-12


@dataclass(frozen=True)
class TileBoard:
    """A board's predicted latency of every layer (topological order) and its per-stage cost."""

    name: str
    layer_ms: tuple[float, ...]
    overhead_ms: float = 0.0
    #: The runner's per-message cost of the two hops of every tile or part the board runs
    #: (both ends of its scatter and of its gather, :func:`charge_runtime`): paid per tile, not
    #: per plan like ``overhead_ms`` (a plan's own hops are the source's and the sink's).
    hop_ms: float = 0.0


@dataclass(frozen=True)
class TileLink:
    """The root's link to every other board."""

    bytes_per_ms: float
    latency_ms: float = 0.0
    #: The root's own work (its core) per other board's tile of a run: sending the tile its
    #: scatter message and receiving its strip (e.g. two hop ends of a runner).
    root_peer_ms: float = 0.0
    #: A runner's per-byte cost at a hop's sending and receiving end (:func:`charge_runtime`):
    #: already in ``bytes_per_ms`` for a tile's time; apart, so that the period puts each end
    #: on the core that runs it (the root's ends of a scatter and a gather on the root).
    sender_per_byte_ms: float = 0.0
    receiver_per_byte_ms: float = 0.0


@dataclass(frozen=True)
class TileCost:
    """One tile of a run: its board, its output strip, work, bytes and predicted time."""

    board: str
    region: Region
    macs: int
    scatter_bytes: int
    gather_bytes: int
    compute_ms: float
    transfer_ms: float
    overhead_ms: float

    @property
    def latency_ms(self) -> float:
        return self.overhead_ms + self.compute_ms + self.transfer_ms


@dataclass(frozen=True)
class TiledRunCost:
    """A run tiled over boards: each tile's cost, the duplicated (halo) work, the latency."""

    run: FusedRun
    tiles: tuple[TileCost, ...]
    run_macs: int

    @property
    def latency_ms(self) -> float:
        return max(tile.latency_ms for tile in self.tiles)

    @property
    def halo_macs(self) -> int:
        """MACs the tiles compute beyond the unsplit run: the duplicated halo, less any rows
        the model computes but the run's output never reads (tiles skip those; e.g. the last
        row before a ``valid`` stride-2 conv), so it can be negative."""
        return sum(tile.macs for tile in self.tiles) - self.run_macs

    @property
    def transfer_bytes(self) -> int:
        return sum(tile.scatter_bytes + tile.gather_bytes for tile in self.tiles)


@dataclass(frozen=True)
class ChannelSplitCost:
    """A dense or 1×1 layer split by output channels over boards (part ``k`` on board ``k``):
    every part reads the whole input; ``part_ms`` is each board's predicted time."""

    position: int
    parts: tuple[ChannelSlice, ...]
    part_ms: tuple[float, ...]

    @property
    def latency_ms(self) -> float:
        return max(self.part_ms)

    @property
    def transfer_bytes(self) -> int:
        return sum(p.input_bytes + p.output_bytes for p in self.parts[1:])


@dataclass(frozen=True, eq=False)
class _Walk:
    """One backward walk from a run end for one strip, reusable for every run start ``i``:
    per position from ``first`` on, the share of the layer's output positions the tile
    computes, its MACs, and the bytes of the run's inputs if the run started there."""

    first: int
    share: np.ndarray
    macs: np.ndarray
    scatter_bytes: np.ndarray
    output: Region


class TileCoster:
    """Costs tiles of runs of one graph on given boards.

    A tile's regions do not depend on where its run starts, only on where it ends, so one
    backward walk per (run end, strip) — memoised — prices the strip for every run start.
    """

    def __init__(self, graph: LayerGraph, boards: Sequence[TileBoard], link: TileLink) -> None:
        if not boards:
            raise TilingError("tiling needs at least one board")
        for board in boards:
            if len(board.layer_ms) != len(graph.layers):
                raise TilingError(
                    f"board {board.name!r} has {len(board.layer_ms)} layer latencies for "
                    f"graph {graph.name!r} of {len(graph.layers)} layers"
                )
        self.graph, self.boards, self.link = graph, tuple(boards), link
        self._layer_ms = np.array([b.layer_ms for b in boards], dtype=np.float64)
        self._run_start = {}
        for first, last in spatial_runs(graph):
            for position in range(first, last + 1):
                self._run_start[position] = first
        self._walk = cache(self._walk_uncached)

    def _walk_uncached(self, end: int, output: Region) -> _Walk:
        graph = self.graph
        first = self._run_start.get(end, end)
        size = end - first + 1
        share, macs = np.zeros(size), np.zeros(size, dtype=np.int64)
        scatter = np.zeros(size, dtype=np.int64)
        pending: dict[str, int] = {}  # bytes of the needed tensors not yet produced
        for tile, needs in walk_back(graph, end, output, first):
            i = tile.position - first
            shape = graph.layers[tile.position].outputs[0].shape
            share[i] = tile.output.positions / (shape[1] * shape[2])
            macs[i] = layer_tile_macs(graph, tile)
            pending.pop(tile.tensor, None)
            for name in graph.layers[tile.position].inputs:  # only these needs just grew
                pending[name] = region_bytes(graph, name, needed_region(needs, name))
            scatter[i] = sum(pending.values())
        return _Walk(first, share, macs, scatter, output)

    def tile(self, run: FusedRun, board_index: int, rows: Span, peers: int = 0) -> TileCost:
        """Cost of the strip ``rows`` of ``run``'s output on board ``board_index``, in a run
        of ``peers`` other tiles (on the root, each costs it ``link.root_peer_ms``)."""
        width = self.graph.layers[run.end].outputs[0].shape[2]
        return self.tile_region(run, board_index, Region(rows, Span(0, width)), peers)

    def tile_region(self, run: FusedRun, board_index: int, output: Region,
                    peers: int = 0) -> TileCost:
        """Cost of any tile ``output`` of ``run``'s output (a strip, or a cell of an ``R×C``
        grid) on board ``board_index``: the same rule as a strip's."""
        walk = self._walk(run.end, output)
        lo, hi = run.start - walk.first, run.end - walk.first + 1
        board = self.boards[board_index]
        compute_ms = float(self._layer_ms[board_index, run.start:run.end + 1] @ walk.share[lo:hi])
        scatter = int(walk.scatter_bytes[lo])
        gather = region_bytes(self.graph, run.output, walk.output)
        transfer_ms = 0.0
        if board_index > 0:
            transfer_ms = 2 * self.link.latency_ms + (scatter + gather) / self.link.bytes_per_ms
        else:
            scatter = gather = 0  # the root already holds the input and keeps its strip
            transfer_ms = peers * self.link.root_peer_ms
        return TileCost(board.name, walk.output, int(walk.macs[lo:hi].sum()), scatter, gather,
                        compute_ms, transfer_ms, board.overhead_ms + board.hop_ms)

    def run_cost(self, run: FusedRun, rows: Sequence[int]) -> TiledRunCost:
        """Cost of ``run`` cut into strips of ``rows`` rows, strip ``k`` on board ``k``."""
        spans = _spans(rows)
        tiles = tuple(self.tile(run, k, span, len(spans) - 1) for k, span in enumerate(spans))
        macs = sum(self.graph.layers[p].macs or 0 for p in run.positions)
        return TiledRunCost(run, tiles, macs)

    def channel_part_ms(self, position: int, board_index: int, channels: Span,
                        peers: int = 0) -> float:
        """Board ``board_index``'s time for output channels ``channels`` of a dense/1×1 layer
        split into ``peers`` + 1 parts (the root pays ``link.root_peer_ms`` per other part)."""
        layer = self.graph.layers[position]
        out = layer.outputs[0]
        board = self.boards[board_index]
        ms = (board.overhead_ms + board.hop_ms
              + board.layer_ms[position] * channels.size / out.shape[-1])
        if board_index > 0:
            in_bytes = sum(self.graph.tensor(n).bytes for n in dict.fromkeys(layer.inputs))
            out_bytes = out.bytes // out.shape[-1] * channels.size
            ms += 2 * self.link.latency_ms + (in_bytes + out_bytes) / self.link.bytes_per_ms
        else:
            ms += peers * self.link.root_peer_ms
        return ms

    def time_fn(self, run: FusedRun, boards: int = 1) -> Callable[[int, Span], float]:
        """``time(board, rows)`` of strips of ``run`` cut over ``boards`` boards; infinite for
        a strip no tile can compute (one lying entirely in the zero padding the run ends
        with)."""

        def time(board: int, rows: Span) -> float:
            try:
                return self.tile(run, board, rows, boards - 1).latency_ms
            except TilingError:
                return math.inf

        return time


def _spans(rows: Sequence[int]) -> tuple[Span, ...]:
    cuts = [0, *itertools.accumulate(rows)]
    return tuple(Span(a, b) for a, b in itertools.pairwise(cuts))


# -- strip sizes ----------------------------------------------------------------------------------
def proportional_rows(total: int, speeds: Sequence[float]) -> tuple[int, ...]:
    """Rows per board in proportion to ``speeds`` (largest remainder, at least 1 each)."""
    if not 1 <= len(speeds) <= total or any(s <= 0 for s in speeds):
        raise TilingError(f"cannot share {total} rows among {len(speeds)} boards of speeds "
                          f"{list(speeds)}")
    exact = [total * s / sum(speeds) for s in speeds]
    rows = [max(1, int(e)) for e in exact]
    while sum(rows) > total:  # the at-least-one rule overfilled: take from the most over
        k = max((k for k in range(len(rows)) if rows[k] > 1), key=lambda k: rows[k] - exact[k])
        rows[k] -= 1
    while sum(rows) < total:  # largest remainder first, ties to the lower index
        k = max(range(len(rows)), key=lambda k: (exact[k] - rows[k], -k))
        rows[k] += 1
    return tuple(rows)


TimeFn = Callable[[int, Span], float]


def max_time(time: TimeFn, rows: Sequence[int]) -> float:
    return max(time(k, span) for k, span in enumerate(_spans(rows)))


def balance_rows(time: TimeFn, rows: Sequence[int]) -> tuple[int, ...]:
    """EdgeCI's balancing: move one row from the slowest board to the fastest while that lowers
    the slowest board's time (ties: lowest board index)."""
    current = list(rows)
    while True:
        times = [time(k, span) for k, span in enumerate(_spans(current))]
        slow = max(range(len(times)), key=lambda k: (times[k], -k))
        fast = min(range(len(times)), key=lambda k: (times[k], k))
        if slow == fast or current[slow] == 1:
            return tuple(current)
        trial = list(current)
        trial[slow] -= 1
        trial[fast] += 1
        if max_time(time, trial) >= times[slow]:
            return tuple(current)
        current = trial


def _fill(time: TimeFn, total: int, boards: int, limit: float) -> tuple[int, ...] | None:
    """Strips with every board's time ≤ ``limit``, each board taking as many rows as it can
    (optimal because a later start never slows a strip); None when impossible."""
    rows, start = [], 0
    for k in range(boards):
        keep = boards - k - 1  # rows the later boards need at least
        if k == boards - 1:
            if time(k, Span(start, total)) > limit:
                return None
            return (*rows, total - start)
        if time(k, Span(start, start + 1)) > limit:
            return None
        low, high = start + 1, total - keep  # the largest stop with time <= limit
        while low < high:
            mid = (low + high + 1) // 2
            if time(k, Span(start, mid)) <= limit:
                low = mid
            else:
                high = mid - 1
        rows.append(low - start)
        start = low
    return tuple(rows)


def optimal_rows(time: TimeFn, total: int, boards: int) -> tuple[int, ...]:
    """The strip sizes that minimise the slowest board's time (exact up to
    ``BISECTION_REL_TOL``; ties keep the greedy bound's strips, else fewer rows on earlier
    boards); ``time(k, Span(start, stop))`` must not decrease as ``stop`` grows. At most
    O(boards × total²) calls of ``time``, far fewer where the bound is tight."""
    bound = _bisected_rows(time, total, boards)
    value, rows = _search_rows(time, total, boards, max_time(time, bound))
    return rows if value < max_time(time, bound) * (1 - BISECTION_REL_TOL) else bound


def _search_rows(time: TimeFn, total: int, boards: int, bound: float
                 ) -> tuple[float, tuple[int, ...]]:
    """The least slowest time and its strips, over every strip end: board ``k``'s strip from
    ``start`` grows until its own time reaches the best found (every longer one is slower)."""

    @cache
    def best(k: int, start: int) -> tuple[float, tuple[int, ...]]:
        if k == boards - 1:
            return time(k, Span(start, total)), (total - start,)
        found: tuple[float, tuple[int, ...]] = (math.inf, ())
        for stop in range(start + 1, total - (boards - k - 1) + 1):
            own = time(k, Span(start, stop))
            if own >= found[0] or own > bound:
                break
            rest, rows = best(k + 1, stop)
            if max(own, rest) < found[0]:
                found = (max(own, rest), (stop - start, *rows))
        return found

    return best(0, 0)


def _bisected_rows(time: TimeFn, total: int, boards: int) -> tuple[int, ...]:
    """Greedy fills bisected over times: exact when a later start never slows a strip."""
    if not 1 <= boards <= total:
        raise TilingError(f"cannot cut {total} rows into {boards} strips")
    high_rows = proportional_rows(total, [1.0] * boards)
    high, low = max_time(time, high_rows), 0.0
    best = high_rows
    while high - low > BISECTION_REL_TOL * max(high, 1e-30):
        mid = (low + high) / 2
        rows = _fill(time, total, boards, mid)
        if rows is None:
            low = mid
        else:
            best, high = rows, max_time(time, rows)
    return best


# -- the DP over fused runs -----------------------------------------------------------------------
@dataclass(frozen=True)
class Segment:
    """Positions ``start..end`` run on the root alone (``tiled`` None) or tiled."""

    start: int
    end: int
    tiled: TiledRunCost | None
    latency_ms: float
    #: A one-layer segment split by output channels instead (``tiled`` is then None).
    channels: ChannelSplitCost | None = None


@dataclass(frozen=True)
class TilingPlan:
    segments: tuple[Segment, ...]
    latency_ms: float

    @property
    def runs(self) -> tuple[TiledRunCost, ...]:
        return tuple(s.tiled for s in self.segments if s.tiled is not None)


def tileable_runs(graph: LayerGraph) -> Mapping[int, tuple[FusedRun, ...]]:
    """Every tileable run, by end position (O(n²) in a maximal spatial run)."""
    uses = last_uses(graph)
    spatial = [is_spatial(graph, layer) for layer in graph.layers]
    by_end: dict[int, list[FusedRun]] = {}
    for start in range(len(graph.layers)):
        escape = -1  # the last use of any tensor made in start..end-1
        for end in range(start, len(graph.layers)):
            if not spatial[end]:
                break
            if escape <= end:
                by_end.setdefault(end, []).append(describe_run(graph, start, end))
            escape = max(escape, uses[end])
    return {end: tuple(runs) for end, runs in sorted(by_end.items())}


def run_speeds(coster: TileCoster, run: FusedRun, boards: int) -> list[float]:
    """Boards' speeds on a run: the inverse of their predicted time for the whole run."""
    return [1.0 / max(sum(coster.boards[k].layer_ms[p] for p in run.positions), 1e-12)
            for k in range(boards)]


def proportional_cost(coster: TileCoster, run: FusedRun, boards: int) -> TiledRunCost | None:
    """A run's cost with strips in proportion to the boards' speed on it (one backward walk per
    strip serves every run ending at the same layer); None if the output has fewer rows than
    boards or a strip cannot be computed."""
    total = coster.graph.tensor(run.output).shape[1]
    if total < boards:
        return None
    rows = proportional_rows(total, run_speeds(coster, run, boards))
    if math.isinf(max_time(coster.time_fn(run, boards), rows)):
        return None
    return coster.run_cost(run, rows)


def balanced_cost(coster: TileCoster, run: FusedRun, boards: int) -> TiledRunCost | None:
    """:func:`proportional_cost`, then EdgeCI's row moves from the slowest board to the
    fastest (each run start gets its own strips: many more walks)."""
    start = proportional_cost(coster, run, boards)
    if start is None:
        return None
    time = coster.time_fn(run, boards)
    rows = balance_rows(time, [t.region.rows.size for t in start.tiles])
    return coster.run_cost(run, rows)


def optimal_cost(coster: TileCoster, run: FusedRun, boards: int) -> TiledRunCost | None:
    """A run's cost with the exact min–max strips (:func:`optimal_rows`)."""
    start = proportional_cost(coster, run, boards)
    if start is None:
        return None
    rows = optimal_rows(coster.time_fn(run, boards), coster.graph.tensor(run.output).shape[1],
                        boards)
    best = coster.run_cost(run, rows)
    return best if best.latency_ms <= start.latency_ms else start


def channel_split_cost(
    coster: TileCoster, position: int, boards: int
) -> ChannelSplitCost | None:
    """A dense/1×1 layer split by output channels over the first ``boards`` boards, the parts
    sized for the least slowest part (exact, as :func:`optimal_rows`); None when the layer
    cannot be split or has fewer channels than boards."""
    layer = coster.graph.layers[position]
    if not can_split_channels(layer) or layer.outputs[0].shape[-1] < boards:
        return None

    def time(k: int, span: Span) -> float:
        return coster.channel_part_ms(position, k, span, boards - 1)
    sizes = optimal_rows(time, layer.outputs[0].shape[-1], boards)
    parts = channel_split(coster.graph, layer.name, sizes)
    return ChannelSplitCost(position, parts,
                            tuple(time(k, p.channels) for k, p in enumerate(parts)))


RunCostFn = Callable[[TileCoster, FusedRun, int], "TiledRunCost | None"]


def plan_tiles(
    coster: TileCoster,
    run_cost: RunCostFn = proportional_cost,
    min_boards: int = 2,
    resize: RunCostFn | None = optimal_cost,
    channels: bool = True,
) -> TilingPlan:
    """The plan of least single-frame latency: each layer on the root, or inside a tiled run
    over the first ``K`` boards (``min_boards ≤ K ≤`` all boards), its strips priced by
    ``run_cost`` and, once the runs are chosen, re-sized by ``resize`` (default: the exact
    min–max strips; None keeps the DP's own, whose latency it then minimises exactly).

    DP over positions: ``best[p]`` is the least latency of layers ``0..p-1``; a step runs one
    layer on the root, one dense/1×1 layer split by output channels, or one tileable run ending
    at ``p - 1``. O(runs × boards) run costs; ties
    go to the root, then to fewer boards. ``channels=False`` leaves output-channel splits out
    (plans of row-tiled runs only, what ``export --tiles`` writes).
    """
    graph, root = coster.graph, coster.boards[0]
    runs_by_end = tileable_runs(graph)
    n = len(graph.layers)
    best: list[tuple[float, tuple[Segment, ...]]] = [(root.overhead_ms, ())]
    for p in range(1, n + 1):
        ms, segs = best[p - 1]
        layer_ms = root.layer_ms[p - 1]
        choice = (ms + layer_ms, (*segs, Segment(p - 1, p - 1, None, layer_ms)))
        for boards in range(min_boards, len(coster.boards) + 1 if channels else 0):
            split = channel_split_cost(coster, p - 1, boards)
            if split is not None and ms + split.latency_ms < choice[0]:
                segment = Segment(p - 1, p - 1, None, split.latency_ms, channels=split)
                choice = (ms + split.latency_ms, (*segs, segment))
        for run in runs_by_end.get(p - 1, ()):
            for boards in range(min_boards, len(coster.boards) + 1):
                cost = run_cost(coster, run, boards)
                if cost is None:
                    continue
                before_ms, before = best[run.start]
                total = before_ms + cost.latency_ms
                if total < choice[0]:
                    segment = Segment(run.start, run.end, cost, cost.latency_ms)
                    choice = (total, (*before, segment))
        best.append(choice)
    latency_ms, segments = best[n]
    plan = TilingPlan(segments, latency_ms)
    return plan if resize is None else resize_strips(coster, plan, resize)


def resize_strips(coster: TileCoster, plan: TilingPlan, run_cost: RunCostFn) -> TilingPlan:
    """The plan with each tiled run's strips re-sized by ``run_cost`` (e.g. exact min–max
    strips after a DP that priced proportional ones); a run keeps its strips unless the new
    ones are faster, so the latency never grows."""
    segments = []
    for segment in plan.segments:
        if segment.tiled is not None:
            new = run_cost(coster, segment.tiled.run, len(segment.tiled.tiles))
            if new is not None and new.latency_ms < segment.latency_ms:
                segment = Segment(segment.start, segment.end, new, new.latency_ms)
        segments.append(segment)
    latency_ms = coster.boards[0].overhead_ms + sum(s.latency_ms for s in segments)
    return TilingPlan(tuple(segments), latency_ms)


# -- from descriptors -----------------------------------------------------------------------------
def link_from_descriptor(link: Link) -> TileLink:
    """The ``framed`` transfer model of a link descriptor, linearised: frame overhead and gaps
    spread over each frame's payload (exact but for the last frame's rounding)."""
    wire_bits_per_byte = link.bits_per_byte
    gap_ms_per_byte = 0.0
    if link.frame_payload_bytes:
        wire_bits_per_byte *= 1 + link.frame_overhead_bytes / link.frame_payload_bytes
        gap_ms_per_byte = link.frame_gap_us / US_PER_MS / link.frame_payload_bytes
    ms_per_byte = wire_bits_per_byte / link.bandwidth_bps * MS_PER_S + gap_ms_per_byte
    return TileLink(bytes_per_ms=1.0 / ms_per_byte, latency_ms=link.message_latency_ms)


def boards_from_platforms(
    graph: LayerGraph,
    platforms: Sequence[Platform],
    precision: str | None = None,
    latency_model: Callable[..., LayerLatencies] = roofline,
) -> tuple[TileBoard, ...]:
    """One :class:`TileBoard` per platform (board ``k`` named ``k:platform``): its per-layer
    latencies from a latency model, its invoke overhead as the per-stage cost."""
    return tuple(
        TileBoard(
            f"{k}:{platform.name}",
            tuple(float(ms) for ms in latency_model(
                graph, platform, precision or platform.default_precision).latency_ms),
            platform.invoke_overhead_ms,
        )
        for k, platform in enumerate(platforms)
    )


def charge_runtime(boards: Sequence[TileBoard], link: TileLink, runtime: RuntimeCost
                   ) -> tuple[tuple[TileBoard, ...], TileLink]:
    """The boards and link with the runner's hand-off cost (:mod:`hwsched.costs.runtime`)
    folded in, the rule ``bench/bench_tiles.py`` shares: every tile or part pays its two hops'
    ends per message (its scatter in and its gather out, four ends: ``hop_ms``), both ends'
    per-byte cost ride on the link, and the root pays its own ends of each other tile's hops
    (``root_peer_ms``: the sending end of the scatter and the receiving end of the gather, per
    message). Not per plan: the root's stages' other hops are the model's input and output,
    which the caller charges (:func:`hwsched.schedule.tiles.runner_io_ms`; charging them here
    too counted them twice).

    >>> from hwsched.costs.runtime import RuntimeCost
    >>> cost = RuntimeCost.asymmetric(sender=(0.1, 1e-6), receiver=(0.2, 3e-6))
    >>> (board,), link = charge_runtime([TileBoard("0:a", (1.0,), 0.5)], TileLink(1000.0),
    ...                                 cost)
    >>> board.overhead_ms, round(board.hop_ms, 9)
    (0.5, 0.6)
    >>> round(1 / link.bytes_per_ms, 9), round(link.root_peer_ms, 9)
    (0.001004, 0.3)
    """
    hop_frame_ms = runtime.sender_ms(0) + runtime.receiver_ms(0)  # both ends, per message
    hop_per_byte_ms = runtime.sender_ms(1) + runtime.receiver_ms(1) - hop_frame_ms
    charged = tuple(TileBoard(b.name, b.layer_ms, b.overhead_ms, b.hop_ms + 2 * hop_frame_ms)
                    for b in boards)
    ms_per_byte = 1.0 / link.bytes_per_ms + hop_per_byte_ms
    sender_per_byte_ms = runtime.sender_ms(1) - runtime.sender_ms(0)
    return charged, TileLink(1.0 / ms_per_byte if ms_per_byte else math.inf, link.latency_ms,
                             link.root_peer_ms + hop_frame_ms,
                             link.sender_per_byte_ms + sender_per_byte_ms,
                             link.receiver_per_byte_ms + hop_per_byte_ms - sender_per_byte_ms)


# -- one tiled run (what ``export --tiles`` exports) ----------------------------------------------
@dataclass(frozen=True)
class SingleRunPlan:
    """One tiled run over the first ``len(cost.tiles)`` boards, every other layer on the root:
    the plan shape ``export --tiles`` writes (scatter and gather on the root)."""

    cost: TiledRunCost
    latency_ms: float

    @property
    def row_sizes(self) -> tuple[int, ...]:
        return tuple(t.region.rows.size for t in self.cost.tiles)


def single_run_latency_ms(coster: TileCoster, cost: TiledRunCost) -> float:
    """Root overhead + the root's layers outside the run + the tiled run's slowest tile."""
    root = coster.boards[0]
    outside = sum(ms for p, ms in enumerate(root.layer_ms) if p not in cost.run.positions)
    return root.overhead_ms + outside + cost.latency_ms


def best_single_run(coster: TileCoster, boards: int = 2,
                    run_cost: RunCostFn = proportional_cost,
                    resize: RunCostFn | None = optimal_cost) -> SingleRunPlan | None:
    """The tileable run whose tiling over the first ``boards`` boards gives the least
    single-frame latency, searched exhaustively over every run that starts after the input
    layers; strips priced by ``run_cost``,
    the winner re-sized by ``resize``. Ties: the earlier start, then the earlier end. None when
    no run can be tiled."""
    graph = coster.graph
    first = 1 + max((graph.position(layer.name) for layer in graph.input_layers), default=-1)
    best: tuple[float, TiledRunCost] | None = None
    for runs in tileable_runs(graph).values():
        for run in runs:
            if run.start < first:
                continue
            cost = run_cost(coster, run, boards)
            if cost is None:
                continue
            ms = single_run_latency_ms(coster, cost)
            if best is None or ms < best[0]:
                best = (ms, cost)
    if best is None:
        return None
    cost = best[1]
    if resize is not None:
        better = resize(coster, cost.run, boards)
        if better is not None and better.latency_ms < cost.latency_ms:
            cost = better
    return SingleRunPlan(cost, single_run_latency_ms(coster, cost))
