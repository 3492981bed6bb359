"""Costs of a tiled run over boards, strip sizing, and the DP that chooses fused runs.

Model (one frame, the latency objective; EdgeCI's "a·FLOPs + b + bytes / bandwidth"):

* boards are ordered; board 0 is the *root*: it runs every layer outside tiled runs, scatters
  each run's input regions and gathers the strips (the issue's arrangement);
* a tile on board ``k`` costs ``overhead_ms[k]`` + ``hop_ms[k]`` + Σ over the run's layers of
  the board's predicted latency of the whole layer × the fraction of the layer's output
  positions the tile computes (halo included), except the time the layer takes to stream its
  weights (``weight_ms``), which every tile pays whole: each tile reads all of the run's
  weights + for ``k > 0`` two link messages (scatter of
  its input regions, gather of its output strip): ``2 · latency_ms + bytes / bytes_per_ms``.
  (Measured, ``bench/bench_tile_efficiency.py``: ResNet-50's 7×7 runs hold 18-29 MB of
  weights for 0.2-0.4 GMAC, and two tiles of one, timed with their caches flushed, took
  1.23-1.31× the unsplit run where their MACs are 1.07×; the share of positions alone
  predicted them 13-19% low, with the weights charged whole 5-10% low; on a board with an
  on-chip parameter cache (Edge TPU) this charges every tile the whole stream, an upper bound
  where its tiles' weights stay cached);
  The link is assumed switched and full-duplex per peer, so the tiles' transfers overlap;
* the root's own tile also pays ``root_peer_ms`` per other tile of its run: the root's ends of
  that tile's scatter and gather messages run on the root's core, before or beside its tile
  (a runner's per-message cost; 0 for a link model without one); and, being a stage of its
  own, it is sent its input region and sends its strip as messages on the root's core (their
  per-byte ends, with a runner's cost);
* every stage is one invocation (``overhead_ms``): the root's first stage once per plan, and
  per split run its own tile and the run's gather stage;
* a tiled run costs its slowest *path* (:func:`run_paths_ms`): a tile's own time plus the
  root's work that lies on its way — the scatter messages the root sends before its own, the
  gather messages it receives from all, the bypass message (tensors made before the run and
  read after it go from the scatter stage straight to the gather stage) and the gather
  stage's invocation; the plan's latency is the root's layers plus its runs;
* a dense or convolution layer may instead be split by output channels (AutoDiCE): part ``k`` on
  board ``k`` costs its share of the layer plus, off the root, the whole input and its slice
  of the output over the link.

Strips are full-width row bands in board order, sized on the latest arrival at the gather
(each tile's path, :func:`run_paths_ms`: its own time, the root's sends before its own and its
receipts of the others), not on the tiles' own times alone. :func:`proportional_rows` sizes them
by the boards' predicted speed, :func:`hop_proportional_rows` so that the paths end at once,
:func:`balance_paths` moves rows one at a time from the slowest path to the fastest while that
lowers the slowest (EdgeCI), and :func:`optimal_path_rows` finds the least latest arrival
(a Pareto search over strip ends, from :func:`optimal_rows`' exact min–max of the own
times: a greedy fill and a bisection give a bound, and a search over the strips' ends that
stops a board's strip once it alone reaches the best time so far proves or improves it — the
greedy alone is not exact: a middle strip near the top border has its halo clipped, so there a
later start can be slower). It is exact on two boards and on up to ``EXACT_PATH_ROWS`` rows;
beyond, on three or more boards, it takes EdgeCI's moves on the paths from the best candidate
(no later than the candidates, not proven least). With no hop charged the paths are the own
times plus one constant, and the strips are :func:`optimal_rows`'.

>>> proportional_rows(10, [1.0, 1.0, 2.0])
(3, 2, 5)
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import cache, lru_cache
from typing import TYPE_CHECKING

import numpy as np

from hwsched.costs.latency import LayerLatencies, measured, roofline
from hwsched.costs.profile import Profile
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
#: Most rows (or channels) the exact path search (:func:`optimal_path_rows`) takes on three
#: or more boards (O(boards × rows² × front): a 4096-channel dense layer on 3 boards took
#: 80 s); beyond, EdgeCI's moves on the paths from the best candidate, not exact. Measured
#: (CPU s under nice, 3 convs of 224 rows, three sets of board speeds, this host's runner
#: per-byte ends ×1 / ×30 / ×300): 0.05-0.07 / 0.16-0.28 / 2.2-2.5 on 3 boards, 0.09-0.16 /
#: 0.42-0.63 / 2.4-5.2 on 4; 256 rows on 4 boards (×30 / ×300), 0.9 / 4.7; a 256-channel
#: dense layer, 0.03 on 3, 0.1 on 4. So a 224-row input stays exact in under a second unless
#: the runner's per-byte cost is ~100× this host's.
EXACT_PATH_ROWS = 256
#: Tile costs one :class:`TileCoster` keeps (each a few hundred bytes): the row searches and
#: the balancing price the same strip of a run many times.
TILE_COST_CACHE = 1 << 16


@dataclass(frozen=True)
class TileBoard:
    """A board's predicted latency of every layer (topological order) and its per-stage cost."""

    name: str
    layer_ms: tuple[float, ...]
    overhead_ms: float = 0.0
    #: The runner's per-message cost of the two hops of every tile or part the board runs
    #: (both ends of its scatter and of its gather, :func:`charge_runtime`): paid per tile or
    #: part, the root's own included; ``overhead_ms`` is paid per stage (the model's input and
    #: output hops are the caller's, :func:`hwsched.schedule.tiles.runner_io_ms`).
    hop_ms: float = 0.0
    #: Per layer, the part of ``layer_ms`` spent streaming the layer's weights from memory
    #: (at most ``layer_ms``; empty: none), which a tile pays whole whatever its share of the
    #: positions (:func:`weight_stream_ms`).
    weight_ms: tuple[float, ...] = ()
    #: Where ``layer_ms`` came from: ``roofline`` (the descriptor) or ``profile`` (measured
    #: segments spread over their layers, :func:`boards_from_platforms`).
    latency_source: str = "roofline"


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
    #: A runner's per-message cost at a hop's sending and receiving end (:func:`charge_runtime`):
    #: already in the boards' ``hop_ms`` and in ``root_peer_ms``; apart, so that a run's paths
    #: follow the order in which the root sends and receives its tiles' messages.
    sender_frame_ms: float = 0.0
    receiver_frame_ms: float = 0.0

    def send_ms(self, payload_bytes: float) -> float:
        """A runner's sending end of one message (0 for a link model without a runner)."""
        return self.sender_frame_ms + self.sender_per_byte_ms * payload_bytes

    def receive_ms(self, payload_bytes: float) -> float:
        """A runner's receiving end of one message."""
        return self.receiver_frame_ms + self.receiver_per_byte_ms * payload_bytes

    def local_bytes_ms(self, payload_bytes: float) -> float:
        """Both ends' per-byte cost of messages between two stages on one core (the root's own
        tile or part): their per-message cost is in the board's ``hop_ms``."""
        return (self.sender_per_byte_ms + self.receiver_per_byte_ms) * payload_bytes


@dataclass(frozen=True)
class TileCost:
    """One tile of a run: its board, its output strip, work, bytes and predicted time.

    ``scatter_bytes``/``gather_bytes`` cross the link (0 on the root, which holds the run's
    input and keeps its strip); ``message_bytes`` are the tile's scatter and gather messages
    whatever board it is on: the root's own tile is a stage of its own, sent its region."""

    board: str
    region: Region
    macs: int
    scatter_bytes: int
    gather_bytes: int
    compute_ms: float
    transfer_ms: float
    overhead_ms: float
    message_bytes: tuple[int, int] = (0, 0)

    @property
    def latency_ms(self) -> float:
        """The tile's own time; strips are sized on the run's path through it
        (:func:`run_paths_ms`, :func:`optimal_path_rows`)."""
        return self.overhead_ms + self.compute_ms + self.transfer_ms


@dataclass(frozen=True)
class TiledRunCost:
    """A run tiled over boards: each tile's cost, the duplicated (halo) work, the latency
    (the slowest of ``path_ms``, :func:`run_paths_ms`; the slowest tile when not given)."""

    run: FusedRun
    tiles: tuple[TileCost, ...]
    run_macs: int
    path_ms: tuple[float, ...] = ()
    #: Bytes of the tensors sent from the run's scatter stage straight to its gather stage
    #: (one message, charged even when empty); None when no tensor bypasses the run.
    bypass_bytes: int | None = None

    @property
    def latency_ms(self) -> float:
        return max(self.path_ms or [tile.latency_ms for tile in self.tiles])

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
    """A dense or conv layer split by output channels over boards (part ``k`` on board ``k``):
    every part reads the whole input; ``part_ms`` is each board's predicted time."""

    position: int
    parts: tuple[ChannelSlice, ...]
    part_ms: tuple[float, ...]
    #: Each part's path through the split (:func:`run_paths_ms`); the latency is the slowest.
    path_ms: tuple[float, ...] = ()
    bypass_bytes: int | None = None

    @property
    def latency_ms(self) -> float:
        return max(self.path_ms or self.part_ms)

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
        for board in boards:
            if board.weight_ms and len(board.weight_ms) != len(graph.layers):
                raise TilingError(
                    f"board {board.name!r} has {len(board.weight_ms)} weight streaming times "
                    f"for graph {graph.name!r} of {len(graph.layers)} layers")
        self._weight_ms = np.minimum(self._layer_ms, np.array(
            [b.weight_ms or (0.0,) * len(graph.layers) for b in boards], dtype=np.float64))
        self._run_start = {}
        for first, last in spatial_runs(graph):
            for position in range(first, last + 1):
                self._run_start[position] = first
        self._walk = cache(self._walk_uncached)
        self._tile_region = lru_cache(maxsize=TILE_COST_CACHE)(self._tile_region_uncached)
        self._lives = np.array(_tensor_lives(graph), dtype=np.int64).reshape(-1, 3)

    def bypass_bytes(self, start: int, end: int) -> int | None:
        """Bytes of the tensors made before position ``start`` and read after ``end`` (or
        model outputs): the export sends them from the split's scatter stage straight to its
        gather stage, one message (:func:`hwsched.tiles.layout.runs_layout`) whose ends a
        runner pays even when it is empty (an empty tensor); None when no tensor does."""
        made, read, size = self._lives.T
        crossing = (made < start) & (read > end)
        return int(size[crossing].sum()) if crossing.any() else None

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
        grid) on board ``board_index``: the same rule as a strip's. Memoised (the DPs and the
        balancing price the same strip many times; ``peers`` counts on the root only)."""
        return self._tile_region(run, board_index, output, peers if board_index == 0 else 0)

    def _tile_region_uncached(self, run: FusedRun, board_index: int, output: Region,
                              peers: int) -> TileCost:
        walk = self._walk(run.end, output)
        lo, hi = run.start - walk.first, run.end - walk.first + 1
        board = self.boards[board_index]
        compute_ms = self._compute_ms(board_index, run, walk.share[lo:hi])
        scatter = int(walk.scatter_bytes[lo])
        gather = region_bytes(self.graph, run.output, walk.output)
        macs = int(walk.macs[lo:hi].sum())
        overhead_ms = board.overhead_ms + board.hop_ms
        if board_index > 0:
            transfer_ms = 2 * self.link.latency_ms + (scatter + gather) / self.link.bytes_per_ms
            return TileCost(board.name, walk.output, macs, scatter, gather, compute_ms,
                            transfer_ms, overhead_ms, (scatter, gather))
        # the root holds the input and keeps its strip: nothing crosses the link, but its tile
        # is still a stage, sent its region and sending its strip on the root's own core
        transfer_ms = peers * self.link.root_peer_ms + self.link.local_bytes_ms(scatter + gather)
        return TileCost(board.name, walk.output, macs, 0, 0, compute_ms, transfer_ms,
                        overhead_ms, (scatter, gather))

    def run_weight_ms(self, board_index: int, run: FusedRun) -> float:
        """What streaming the run's weights costs a tile on board ``board_index``, whatever
        its rows (each layer's capped at its time, as :meth:`_compute_ms` charges it)."""
        return float(self._weight_ms[board_index, run.start:run.end + 1].sum())

    def _compute_ms(self, board_index: int, run: FusedRun, share: np.ndarray) -> float:
        """The run's layers on one tile: each layer's time × the tile's share of its output
        positions, but its weight streaming whole in every layer the tile computes."""
        layers = slice(run.start, run.end + 1)
        weights = self._weight_ms[board_index, layers]
        scaled = (self._layer_ms[board_index, layers] - weights) @ share
        return float(scaled + weights @ (share > 0))

    def run_cost(self, run: FusedRun, rows: Sequence[int]) -> TiledRunCost:
        """Cost of ``run`` cut into strips of ``rows`` rows, strip ``k`` on board ``k``."""
        spans = _spans(rows)
        tiles = tuple(self.tile(run, k, span, len(spans) - 1) for k, span in enumerate(spans))
        macs = sum(self.graph.layers[p].macs or 0 for p in run.positions)
        bypass = self.bypass_bytes(run.start, run.end)
        paths = run_paths_ms([t.latency_ms for t in tiles], [t.message_bytes for t in tiles],
                             self.link, self.boards[0].overhead_ms, bypass)
        return TiledRunCost(run, tiles, macs, paths, bypass)

    def channel_part_ms(self, position: int, board_index: int, channels: Span,
                        peers: int = 0) -> float:
        """Board ``board_index``'s time for output channels ``channels`` of a dense/conv layer
        split into ``peers`` + 1 parts (the root pays ``link.root_peer_ms`` per other part,
        and its own part's messages' per-byte ends, as a root tile's)."""
        layer = self.graph.layers[position]
        out = layer.outputs[0]
        board = self.boards[board_index]
        ms = (board.overhead_ms + board.hop_ms
              + board.layer_ms[position] * channels.size / out.shape[-1])
        in_bytes, out_bytes = self.part_message_bytes(position, channels)
        if board_index > 0:
            ms += 2 * self.link.latency_ms + (in_bytes + out_bytes) / self.link.bytes_per_ms
        else:
            ms += peers * self.link.root_peer_ms + self.link.local_bytes_ms(in_bytes + out_bytes)
        return ms

    def part_message_bytes(self, position: int, channels: Span) -> tuple[int, int]:
        """A part's two messages: the layer's whole input in, its slice of the output out."""
        layer = self.graph.layers[position]
        out = layer.outputs[0]
        in_bytes = sum(self.graph.tensor(n).bytes for n in dict.fromkeys(layer.inputs))
        return in_bytes, out.bytes // out.shape[-1] * channels.size

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

    def split_paths(self, run: FusedRun, boards: int) -> SplitPaths:
        """``run`` cut into strips over the first ``boards`` boards, as paths
        (:class:`SplitPaths`: what the strips are sized on)."""

        def terms(board: int, rows: Span) -> tuple[float, tuple[int, int]]:
            try:
                tile = self.tile(run, board, rows, boards - 1)
            except TilingError:
                return math.inf, (0, 0)
            return tile.latency_ms, tile.message_bytes

        return SplitPaths(terms, self.link, self.boards[0].overhead_ms,
                          self.bypass_bytes(run.start, run.end))

    def channel_paths(self, position: int, boards: int) -> SplitPaths:
        """A dense/convolution layer split by output channels over ``boards`` boards, as paths."""

        def terms(board: int, channels: Span) -> tuple[float, tuple[int, int]]:
            return (self.channel_part_ms(position, board, channels, boards - 1),
                    self.part_message_bytes(position, channels))

        return SplitPaths(terms, self.link, self.boards[0].overhead_ms,
                          self.bypass_bytes(position, position))


def _spans(rows: Sequence[int]) -> tuple[Span, ...]:
    cuts = [0, *itertools.accumulate(rows)]
    return tuple(Span(a, b) for a, b in itertools.pairwise(cuts))


def _tensor_lives(graph: LayerGraph) -> tuple[tuple[int, int, int], ...]:
    """``(made at, last read at, bytes)`` per tensor; a model output is read after every
    layer (``len(graph.layers)``)."""
    outputs = set(graph.outputs)
    lives = []
    for position, layer in enumerate(graph.layers):
        for tensor in layer.outputs:
            users = graph.consumers(tensor.name)
            read = max((graph.position(users[-1]) if users else position),
                       len(graph.layers) if tensor.name in outputs else position)
            lives.append((position, read, tensor.bytes))
    return tuple(lives)


def run_paths_ms(own_ms: Sequence[float], message_bytes: Sequence[tuple[int, int]],
                 link: TileLink, gather_overhead_ms: float, bypass_bytes: int | None
                 ) -> tuple[float, ...]:
    """Each tile's (or part's) path through a split run, from the end of the scatter stage's
    compute to the start of the gather stage's: what a frame waits for if that tile arrives
    last, as the runners play the exported stages (:func:`hwsched.tiles.timing.frame_schedule`).

    The root's core sends the scatter messages in board order (then the bypass message), runs
    its own tile, and its gather stage receives every strip (and the bypass) before it
    computes. So tile ``k > 0`` also waits for the root's sends of the tiles before it and its
    receipt of all the others' strips; the root's tile for all the sends and receipts
    (``own_ms[0]`` holds their per-message part, ``root_peer_ms``). Every path also crosses
    the gather stage's invocation.

    Exact (to the order of additions) when every tensor that crosses a run is made in its
    scatter stage and read in its gather stage (any plan of one run), with no wire between
    the root's own stages. Otherwise the export sends one message per pair of stages: a
    tensor made before run ``r`` and read after run ``r + 1`` goes once from its home to its
    reader (or, read by a later run's tiles, to each of them as regions, from a root stage
    other than their scatter stage), where the planner charges a bypass message at each run it
    crosses; the error is at most both ends of one message of its bytes per run crossed, and
    per such tile one message's ends. The strips are sized on these paths
    (:func:`optimal_path_rows`).

    >>> link = TileLink(1e9, sender_frame_ms=1.0, receiver_frame_ms=2.0)
    >>> run_paths_ms([10.0, 10.0], [(0, 0), (0, 0)], link, 0.5, None)  # frames only
    (10.5, 13.5)
    >>> run_paths_ms([10.0, 10.0], [(0, 0), (0, 0)], link, 0.5, 0)  # and an empty bypass
    (13.5, 15.5)
    """
    sends = [link.send_ms(s) for s, _ in message_bytes]
    receives = [link.receive_ms(g) for _, g in message_bytes]
    bypass_in = link.receive_ms(bypass_bytes) if bypass_bytes is not None else 0.0
    bypass_out = link.send_ms(bypass_bytes) if bypass_bytes is not None else 0.0
    after = gather_overhead_ms + bypass_in
    per_byte = sum(link.sender_per_byte_ms * s + link.receiver_per_byte_ms * g
                   for s, g in message_bytes[1:])
    paths = [own_ms[0] + per_byte + bypass_out + after]
    for k in range(1, len(own_ms)):
        paths.append(own_ms[k] + sum(sends[:k]) + sum(receives) - receives[k] + after)
    return tuple(paths)


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
    the slowest board's time (ties: lowest board index; :func:`balance_paths` on own times)."""
    return balance_paths(lambda r: [time(k, span) for k, span in enumerate(_spans(r))], rows)


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


# -- strips sized on their paths ------------------------------------------------------------------
#: ``terms(k, rows)``: tile ``k``'s own time with strip ``rows`` and its two messages' bytes
#: (scatter in, gather out); an infinite time for a strip no tile can compute.
TermsFn = Callable[[int, Span], tuple[float, tuple[int, int]]]
#: ``paths(rows)``: each tile's time for a whole split (what :func:`balance_paths` evens out).
PathsFn = Callable[[Sequence[int]], Sequence[float]]


@dataclass(frozen=True)
class SplitPaths:
    """A split run's paths as a function of its strips (:func:`run_paths_ms`): a tile's strip
    reaches the gather after its own time *and* the root's sends before its own and receipts
    of the others, so the strips minimise the latest arrival, not the slowest own time."""

    terms: TermsFn
    link: TileLink
    gather_overhead_ms: float
    bypass_bytes: int | None = None

    def paths(self, rows: Sequence[int]) -> tuple[float, ...]:
        own, messages = zip(*(self.terms(k, span) for k, span in enumerate(_spans(rows))),
                            strict=True)
        return run_paths_ms(own, messages, self.link, self.gather_overhead_ms,
                            self.bypass_bytes)

    def latest(self, rows: Sequence[int]) -> float:
        """The latest arrival at the gather (the split run's latency)."""
        return max(self.paths(rows))


def hop_proportional_rows(total: int, ms_per_row: Sequence[float],
                          offsets_ms: Sequence[float]) -> tuple[int, ...]:
    """Rows per board so that every board's path — ``offsets_ms[k]`` (all on it but its
    compute: hops, invocations, the root's sends before it) plus its rows × ``ms_per_row[k]``
    — ends at once: EdgeCI's proportional split with each device's fixed terms. Equal offsets
    give :func:`proportional_rows` by speed; a board whose offset alone passes the common end
    keeps one row.

    >>> hop_proportional_rows(12, [1.0, 1.0], [4.0, 0.0])  # the first path 4 ms longer
    (4, 8)
    """
    speeds = [1.0 / max(ms, 1e-12) for ms in ms_per_row]
    if max(offsets_ms) == min(offsets_ms):  # the same ties as the speed split, not rounded
        return proportional_rows(total, speeds)
    end = (total + sum(o * v for o, v in zip(offsets_ms, speeds, strict=True))) / sum(speeds)
    return proportional_rows(total, [max((end - o) * v, 1e-9)
                                     for o, v in zip(offsets_ms, speeds, strict=True)])


def balance_paths(paths: PathsFn, rows: Sequence[int]) -> tuple[int, ...]:
    """EdgeCI's balancing on whole-split times: move one row from the slowest path to the
    fastest while that lowers the slowest (ties: lowest board index)."""
    current = list(rows)
    while True:
        times = list(paths(current))
        slow = max(range(len(times)), key=lambda k: (times[k], -k))
        fast = min(range(len(times)), key=lambda k: (times[k], k))
        if slow == fast or current[slow] == 1:
            return tuple(current)
        trial = list(current)
        trial[slow] -= 1
        trial[fast] += 1
        if max(paths(trial)) >= times[slow]:
            return tuple(current)
        current = trial


def optimal_path_rows(split: SplitPaths, total: int, boards: int,
                      candidates: Sequence[Sequence[int]] = ()) -> tuple[int, ...]:
    """The strips that minimise the latest arrival at the gather (``split.latest``), exact
    but on three or more boards beyond ``EXACT_PATH_ROWS`` rows (last paragraph):
    the best of ``candidates`` (default: equal strips) unless a split is strictly better
    (to ``BISECTION_REL_TOL``), so strips already optimal are kept — :func:`optimal_rows`'
    when no hop is charged, whose paths are then the own times plus one constant.

    Why it is exact (:func:`run_paths_ms`): a tile ``k ≥ 1`` reaches the gather at its own
    time less its receipt, plus the root's sends to the tiles before it, plus the receipts of
    all the strips — a constant, since the strips partition the run's output (over the
    splits whose every strip can be computed; priced on the best candidate). The sends
    before ``k`` shift every later path alike, so over tiles ``m..`` the slowest path is
    ``max(f_m, send_m + slowest over m+1..)``, a recursion over (tile, first row); the root's
    path adds the per-byte ends of every other tile's messages, a sum over the same tiles, so
    each state keeps the Pareto front of (slowest path, that sum). Own times must not
    decrease as a strip grows at either end (as :func:`optimal_rows`); O(boards × total² ×
    front) calls, far fewer where the bound prunes. Not exact on three or more boards beyond
    ``EXACT_PATH_ROWS`` rows: there EdgeCI's moves on the paths (:func:`balance_paths`)
    from the best candidate.
    """
    if not 1 <= boards <= total:
        raise TilingError(f"cannot cut {total} rows into {boards} strips")
    pool = [tuple(rows) for rows in candidates] or [proportional_rows(total, [1.0] * boards)]
    start = min(pool, key=split.latest)
    bound = split.latest(start)
    if boards == 1 or math.isinf(bound):
        return start
    if boards > 2 and total > EXACT_PATH_ROWS:
        moved = balance_paths(split.paths, start)
        return moved if split.latest(moved) < bound else start
    found = _search_paths(split, start, bound)
    if found is not None and split.latest(found) < bound * (1 - BISECTION_REL_TOL):
        return found
    return start


def _pareto(entries) -> tuple[tuple[float, float, tuple[int, ...]], ...]:
    """The entries ``(slowest, sum, rows)`` no other beats in both (ties: the first rows)."""
    front, least = [], math.inf
    for entry in sorted(entries):
        if entry[1] < least:
            front.append(entry)
            least = entry[1]
    return tuple(front)


def _search_paths(split: SplitPaths, start: Sequence[int], bound: float
                  ) -> tuple[int, ...] | None:
    """The strips of least latest arrival below ``bound`` (:func:`optimal_path_rows`), or
    None when none is. The root's receipts of all the strips are a constant, priced on
    ``start``, a split every strip of which can be computed: a strip lying in the run's zero
    padding has no bytes (the equal split's, priced so, made the constant too small and the
    bound pruned the best split)."""
    total, boards = sum(start), len(start)
    link, bypass = split.link, split.bypass_bytes
    after = split.gather_overhead_ms + (link.receive_ms(bypass) if bypass is not None else 0.0)
    bypass_out = link.send_ms(bypass) if bypass is not None else 0.0
    receipts = sum(link.receive_ms(split.terms(k, span)[1][1])
                   for k, span in enumerate(_spans(start)))
    floor = (boards - 1) * link.receiver_frame_ms + after  # the least a path adds to own
    best: list = [bound, None]  # the bound tightens as splits are found: memo stays valid

    def fits_last(stop: int) -> bool:
        """Whether the last strip from ``stop`` can be under the bound (or lies in the zero
        padding: those are the last strips, and priced infinite below)."""
        own = split.terms(boards - 1, Span(stop, total))[0]
        return math.isinf(own) or own + floor < best[0]

    def first_stop(m: int, start: int) -> int:
        """Tile ``m``'s least stop worth trying: before the last tile, the least from which
        the last strip fits (its own time does not grow as its start moves down)."""
        low, high = start + 1, total - (boards - m - 1)
        if m != boards - 2:
            return low
        while low < high:
            mid = (low + high) // 2
            low, high = (low, mid) if fits_last(mid) else (mid + 1, high)
        return low

    @cache
    def front(m: int, start: int) -> tuple[tuple[float, float, tuple[int, ...]], ...]:
        last = m == boards - 1
        entries = []
        stops = [total] if last else range(first_stop(m, start), total - (boards - m - 1) + 1)
        for stop in stops:
            own, (scatter, gather) = split.terms(m, Span(start, stop))
            if math.isinf(own):
                continue
            if own + floor >= best[0]:
                break
            f = own - link.receive_ms(gather)
            peer = link.sender_per_byte_ms * scatter + link.receiver_per_byte_ms * gather
            rests = [(-math.inf, 0.0, ())] if last else front(m + 1, stop)
            sent = link.send_ms(scatter)
            entries += [(max(f, sent + slowest), peer + ends, (stop - start, *rows))
                        for slowest, ends, rows in rests]
        return _pareto(e for e in entries if e[0] + receipts + after < best[0])

    for stop in range(1, total - boards + 2):
        own, (scatter, _) = split.terms(0, Span(0, stop))
        if math.isinf(own):
            continue
        root = own + bypass_out + after
        if root >= best[0]:
            break
        for slowest, ends, rows in front(1, stop):
            value = max(root + ends, link.send_ms(scatter) + slowest + receipts + after)
            if value < best[0]:
                best[:] = [value, (stop, *rows)]
    return best[1]


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
    """Boards' speeds on a run: the inverse of their predicted time for the whole run's
    rows, its weight streaming left out (every tile pays that whole, whatever its rows:
    :meth:`TileCoster.run_weight_ms`)."""
    return [1.0 / max(sum(coster.boards[k].layer_ms[p] for p in run.positions)
                      - coster.run_weight_ms(k, run), 1e-12)
            for k in range(boards)]


def proportional_cost(coster: TileCoster, run: FusedRun, boards: int) -> TiledRunCost | None:
    """A run's cost with strips in proportion to the boards' speed on it, or, when faster, so
    that their paths end at once (:func:`hop_proportional_rows`: each tile's hops, invocations
    and the root's sends before it taken from the speed split's paths); one backward walk per
    strip serves every run ending at the same layer. None if the output has fewer rows than
    boards or a strip cannot be computed.

    The second try (issue 14) makes the DP's candidate prices differ from the speed split's
    it priced before, even with no runner charged: a tile off the root pays the link (its
    latency and bytes) that the root's own does not, and boards' invocations differ, so the
    paths' fixed parts differ and the hop-proportional strips can win (two equal boards, a
    24-row run, a link of 0.5 ms and 500 bytes/ms: 16/8 rows, 6.8 ms, against 12/12,
    8.0 ms); the DP may then choose other runs than it did. Equal fixed parts give the speed
    split, as before."""
    total = coster.graph.tensor(run.output).shape[1]
    if total < boards:
        return None
    speeds = run_speeds(coster, run, boards)
    rows = proportional_rows(total, speeds)
    if math.isinf(max_time(coster.time_fn(run, boards), rows)):
        return None
    plain = coster.run_cost(run, rows)
    # a tile's fixed part: its path beyond its compute, and its weights streamed whole
    offsets = [path - tile.compute_ms + coster.run_weight_ms(k, run)
               for k, (path, tile) in enumerate(zip(plain.path_ms, plain.tiles, strict=True))]
    hops = hop_proportional_rows(total, [1.0 / (v * total) for v in speeds], offsets)
    if hops == rows or math.isinf(max_time(coster.time_fn(run, boards), hops)):
        return plain
    hopped = coster.run_cost(run, hops)
    return hopped if hopped.latency_ms < plain.latency_ms else plain


def balanced_cost(coster: TileCoster, run: FusedRun, boards: int) -> TiledRunCost | None:
    """:func:`proportional_cost`, then EdgeCI's row moves from the slowest path to the
    fastest (:func:`balance_paths`; each run start gets its own strips: many more walks)."""
    start = proportional_cost(coster, run, boards)
    if start is None:
        return None
    rows = balance_paths(coster.split_paths(run, boards).paths,
                         [t.region.rows.size for t in start.tiles])
    return coster.run_cost(run, rows)


def optimal_cost(coster: TileCoster, run: FusedRun, boards: int) -> TiledRunCost | None:
    """A run's cost with the strips of least latest arrival at the gather
    (:func:`optimal_path_rows`: exact on two boards or up to ``EXACT_PATH_ROWS`` rows, else
    EdgeCI's moves on the paths, no later than the candidates; the min–max strips of the
    tiles' own times, :func:`optimal_rows`, when nothing beats them, as with no hop
    charged)."""
    start = proportional_cost(coster, run, boards)
    if start is None:
        return None
    total = coster.graph.tensor(run.output).shape[1]
    own = optimal_rows(coster.time_fn(run, boards), total, boards)
    rows = optimal_path_rows(coster.split_paths(run, boards), total, boards,
                             (own, tuple(t.region.rows.size for t in start.tiles)))
    best = coster.run_cost(run, rows)
    return best if best.latency_ms <= start.latency_ms else start


def channel_split_cost(
    coster: TileCoster, position: int, boards: int
) -> ChannelSplitCost | None:
    """A dense/conv layer split by output channels over the first ``boards`` boards, the parts
    sized for the least latest arrival at the gather (:func:`optimal_path_rows` from the
    min–max parts of their own times, :func:`optimal_rows`); None when the layer cannot be
    split or has fewer channels than boards."""
    layer = coster.graph.layers[position]
    if not can_split_channels(layer) or layer.outputs[0].shape[-1] < boards:
        return None

    def time(k: int, span: Span) -> float:
        return coster.channel_part_ms(position, k, span, boards - 1)
    width = layer.outputs[0].shape[-1]
    split = coster.channel_paths(position, boards)
    sizes = optimal_path_rows(split, width, boards, (optimal_rows(time, width, boards),))
    parts = channel_split(coster.graph, layer.name, sizes)
    part_ms = tuple(time(k, p.channels) for k, p in enumerate(parts))
    return ChannelSplitCost(position, parts, part_ms, split.paths(sizes), split.bypass_bytes)


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
    layer on the root, one dense/conv layer split by output channels, or one tileable run ending
    at ``p - 1``. O(runs × boards) run costs; ties
    go to the root, then to fewer boards. ``channels=False`` leaves output-channel splits out
    (plans of row-tiled runs only).
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
    profiles: Sequence[Profile | None] | None = None,
    co_run: bool = False,
) -> tuple[TileBoard, ...]:
    """One :class:`TileBoard` per platform (board ``k`` named ``k:platform``): its per-layer
    latencies from a latency model, its invoke overhead as the per-stage cost, and the time
    each layer streams its weights (:func:`weight_stream_ms`).

    ``profiles`` (one per platform, None where there is none) prices a board from its measured
    segments instead, as the chain and stage-graph costers do
    (:class:`hwsched.costs.placement.PlacementCoster`): each segment's time spread over its
    layers by roofline shares (:func:`hwsched.costs.latency.measured`) with a paced profile's
    wake after idle (:attr:`hwsched.costs.profile.Profile.wake_ms`) taken off every segment
    and charged once per stage, in ``overhead_ms``. A tiled plan runs more stages than a
    chain — every tile and every gather is an invocation woken by its message — so a profile
    that spread the wake over the segments would charge a tiled run's stages none of it.
    ``co_run``: the boards are cores of one chip (an emulation on one host), so their tiles,
    which compute at once, are priced from a profile's co-run timings where it has them
    (:meth:`hwsched.costs.profile.Profile.co_running`, the same wake taken off)."""
    if profiles is not None and len(profiles) != len(platforms):
        raise TilingError(f"{len(profiles)} profiles for {len(platforms)} boards")
    boards = []
    for k, platform in enumerate(platforms):
        chosen = precision or platform.default_precision
        profile = profiles[k] if profiles is not None else None
        overhead_ms = platform.invoke_overhead_ms
        if profile is None:
            latencies = latency_model(graph, platform, chosen)
        else:
            overhead_ms += profile.wake_ms or 0.0
            spread = (profile.co_running() if co_run else None) or profile.settled()
            latencies = measured(graph, platform, chosen, spread)
        layer_ms = tuple(float(ms) for ms in latencies.latency_ms)
        boards.append(TileBoard(f"{k}:{platform.name}", layer_ms, overhead_ms,
                                weight_ms=weight_stream_ms(graph, platform, chosen, layer_ms),
                                latency_source="roofline" if profile is None else "profile"))
    return tuple(boards)


def weight_stream_ms(graph: LayerGraph, platform: Platform, precision: str,
                     layer_ms: Sequence[float]) -> tuple[float, ...]:
    """Per layer, the time to read its weights at the board's memory bandwidth, at most the
    layer's own time: the part of a layer that a tile of it does not shrink (every tile reads
    the whole kernel; a run's weights do not stay in cache from frame to frame).

    >>> from hwsched.hardware import load_platform
    >>> from hwsched.ir import Layer, OpKind, Tensor
    >>> t = lambda n, c: Tensor(n, n, (1, 7, 7, c), "float32")
    >>> g = LayerGraph("g", (Layer("x", OpKind.INPUT, (), (t("x", 512),)),
    ...     Layer("c", OpKind.CONV2D, ("x",), (t("c", 512),), params=512 * 512)),
    ...     outputs=("c",))
    >>> rpi4 = load_platform("rpi4")
    >>> [round(ms, 3) for ms in weight_stream_ms(g, rpi4, "fp32", [0.0, 5.0])]
    [0.0, 0.187]
    """
    from hwsched.costs.memory import layer_weight_bytes

    bytes_per_ms = platform.memory_bandwidth_gbps * 1e9 / MS_PER_S
    return tuple(min(layer_weight_bytes(layer, precision) / bytes_per_ms, ms)
                 for layer, ms in zip(graph.layers, layer_ms, strict=True))


def charge_runtime(boards: Sequence[TileBoard], link: TileLink, runtime: RuntimeCost
                   ) -> tuple[tuple[TileBoard, ...], TileLink]:
    """The boards and link with the runner's hand-off cost (:mod:`hwsched.costs.runtime`)
    folded in, the rule ``bench/bench_tiles.py`` shares: every tile or part pays its two hops'
    ends per message (its scatter in and its gather out, four ends: ``hop_ms``), the root's
    own tile or part too (a stage of its own: the scatter stage sends it its region and it
    sends its strip to the gather stage, all four ends on the root's core); both ends'
    per-byte cost ride on the link (on the root's core for its own tile,
    :meth:`TileLink.local_bytes_ms`), and the root pays its own ends of each other tile's
    hops (``root_peer_ms``: the sending end of the scatter and the receiving end of the
    gather, per message). The link keeps each end's terms apart too, for the order in which
    the root sends and receives (:func:`run_paths_ms`, which also charges the bypass message
    from a run's scatter stage to its gather stage). The model's input and output hops are
    the caller's (:func:`hwsched.schedule.tiles.runner_io_ms`; charging them here too counted
    them twice).

    >>> from hwsched.costs.runtime import RuntimeCost
    >>> cost = RuntimeCost.asymmetric(sender=(0.1, 1e-6), receiver=(0.2, 3e-6))
    >>> (board,), link = charge_runtime([TileBoard("0:a", (1.0,), 0.5)], TileLink(1000.0),
    ...                                 cost)
    >>> board.overhead_ms, round(board.hop_ms, 9)
    (0.5, 0.6)
    >>> round(1 / link.bytes_per_ms, 9), round(link.root_peer_ms, 9)
    (0.001004, 0.3)
    >>> round(link.send_ms(1000), 9), round(link.receive_ms(1000), 9)
    (0.101, 0.203)
    """
    hop_frame_ms = runtime.sender_ms(0) + runtime.receiver_ms(0)  # both ends, per message
    hop_per_byte_ms = runtime.sender_ms(1) + runtime.receiver_ms(1) - hop_frame_ms
    charged = tuple(replace(b, hop_ms=b.hop_ms + 2 * hop_frame_ms) for b in boards)
    ms_per_byte = 1.0 / link.bytes_per_ms + hop_per_byte_ms
    sender_per_byte_ms = runtime.sender_ms(1) - runtime.sender_ms(0)
    return charged, TileLink(1.0 / ms_per_byte if ms_per_byte else math.inf, link.latency_ms,
                             link.root_peer_ms + hop_frame_ms,
                             link.sender_per_byte_ms + sender_per_byte_ms,
                             link.receiver_per_byte_ms + hop_per_byte_ms - sender_per_byte_ms,
                             link.sender_frame_ms + runtime.sender_ms(0),
                             link.receiver_frame_ms + runtime.receiver_ms(0))


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
    """Root overhead + the root's layers outside the run + the tiled run's slowest path
    (:func:`run_paths_ms`: its gather stage's invocation and the root's hop ends included)."""
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
