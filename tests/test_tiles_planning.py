"""Tile costs, strip sizing and the fused-run DP against brute force on small IR graphs.

Graphs are built directly in the IR (no TensorFlow): random chains of convolutions and pools,
some wrapped in residual adds, ending in a global pool and a dense layer.
"""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwsched.costs.transfer import framed
from hwsched.errors import TilingError
from hwsched.flops import op_work
from hwsched.hardware import load_link
from hwsched.ir import Layer, LayerGraph, OpKind, Tensor
from hwsched.tiles.planning import (
    TileBoard,
    TileCoster,
    TileLink,
    balance_rows,
    balanced_cost,
    best_single_run,
    channel_split_cost,
    link_from_descriptor,
    max_time,
    optimal_rows,
    plan_tiles,
    proportional_cost,
    proportional_rows,
    tileable_runs,
)
from hwsched.tiles.receptive import (
    Region,
    Span,
    channel_split,
    fused_run,
    region_bytes,
    tile_macs,
    tile_plan,
)


# -- small IR graphs ------------------------------------------------------------------------------
class _Builder:
    def __init__(self, rows: int, cols: int, channels: int = 4) -> None:
        x = Tensor("x", "x", (1, rows, cols, channels), "float32")
        self.layers = [Layer("x", OpKind.INPUT, (), (x,))]
        self.last = x

    def add(self, op: OpKind, inputs: tuple[str, ...], shape: tuple[int, ...], **attrs) -> str:
        name = f"l{len(self.layers)}"
        out = Tensor(name, name, shape, "float32")
        in_shapes = [t.shape for t in self._tensors(inputs)]
        work = op_work(op, in_shapes, [shape], attrs)
        self.layers.append(Layer(name, op, inputs, (out,), macs=work.macs, flops=work.flops,
                                 attrs=attrs))
        self.last = out
        return name

    def _tensors(self, names):
        by_name = {t.name: t for layer in self.layers for t in layer.outputs}
        return [by_name[n] for n in names]

    def window(self, op: OpKind, k: int, s: int, padding: str) -> None:
        _, h, w, c = self.last.shape
        size = (lambda n: -(-n // s)) if padding == "same" else (lambda n: (n - k) // s + 1)
        if min(size(h), size(w)) < 1:
            return
        extra = {"pool_size": (k, k)} if op is OpKind.MAX_POOL else {
            "kernel_size": (k, k), "dilation_rate": (1, 1)}
        self.add(op, (self.last.name,), (1, size(h), size(w), c),
                 strides=(s, s), padding=padding, **extra)

    def residual(self, k: int) -> None:
        source = self.last
        self.add(OpKind.CONV2D, (source.name,), source.shape, kernel_size=(k, k),
                 strides=(1, 1), dilation_rate=(1, 1), padding="same")
        self.add(OpKind.ELEMENTWISE, (source.name, self.last.name), source.shape)

    def graph(self) -> LayerGraph:
        c = self.last.shape[3]
        self.add(OpKind.GLOBAL_POOL, (self.last.name,), (1, c))
        self.add(OpKind.DENSE, (self.last.name,), (1, 3))
        return LayerGraph("g", tuple(self.layers), outputs=(self.last.name,))


@st.composite
def graphs(draw, max_layers: int = 4):
    b = _Builder(draw(st.integers(4, 10)), draw(st.integers(3, 6)))
    for _ in range(draw(st.integers(1, max_layers))):
        kind = draw(st.sampled_from(["conv", "pool", "res"]))
        k, s = draw(st.integers(1, 3)), draw(st.integers(1, 2))
        if kind == "res":
            b.residual(k)
        else:
            op = OpKind.CONV2D if kind == "conv" else OpKind.MAX_POOL
            b.window(op, k, s, draw(st.sampled_from(["same", "valid"])))
    if len(b.layers) == 1:  # every window was too large for the map
        b.residual(1)
    return b.graph()


@st.composite
def costers(draw, max_boards: int = 3, max_layers: int = 4):
    graph = draw(graphs(max_layers))
    n_boards = draw(st.integers(1, max_boards))
    boards = []
    for k in range(n_boards):
        speed = draw(st.floats(0.25, 4.0))
        per_layer = tuple(
            0.0 if layer.op is OpKind.INPUT else ((layer.flops or 0) * 1e-4 + 0.01) / speed
            for layer in graph.layers
        )
        boards.append(TileBoard(f"b{k}", per_layer, draw(st.floats(0.0, 0.2))))
    link = TileLink(draw(st.floats(100.0, 1e5)), draw(st.floats(0.0, 0.1)),
                    draw(st.floats(0.0, 0.2)))  # the root's own work per other tile
    return TileCoster(graph, boards, link)


def _first_run(coster: TileCoster):
    graph = coster.graph
    return fused_run(graph, 1, max(p for p in range(len(graph)) if _tileable(graph, 1, p)))


def _tileable(graph, start, end) -> bool:
    try:
        fused_run(graph, start, end)
    except TilingError:
        return False
    return True


def _compositions(total: int, parts: int):
    for cuts in itertools.combinations(range(1, total), parts - 1):
        yield tuple(b - a for a, b in itertools.pairwise((0, *cuts, total)))


# -- strip sizes ----------------------------------------------------------------------------------
@given(total=st.integers(1, 60), speeds=st.lists(st.floats(0.01, 100.0), min_size=1, max_size=6))
def test_proportional_rows_cover_the_map_and_follow_speed(total, speeds):
    if len(speeds) > total:
        with pytest.raises(TilingError):
            proportional_rows(total, speeds)
        return
    rows = proportional_rows(total, speeds)
    assert sum(rows) == total and min(rows) >= 1
    exact = [total * s / sum(speeds) for s in speeds]
    if min(exact) >= 1:  # no board was lifted to its one row: each within a row of its share
        assert all(abs(r - e) < 1 for r, e in zip(rows, exact, strict=True))


@settings(max_examples=60, deadline=None)
@given(coster=costers(max_boards=4), data=st.data())
def test_optimal_rows_equal_brute_force_and_balancing_never_hurts(coster, data):
    run = _first_run(coster)
    total = coster.graph.tensor(run.output).shape[1]
    boards = data.draw(st.integers(1, min(len(coster.boards), total)))
    time = coster.time_fn(run, boards)
    brute = min(max_time(time, rows) for rows in _compositions(total, boards))
    exact = optimal_rows(time, total, boards)
    assert sum(exact) == total and min(exact) >= 1
    assert max_time(time, exact) == pytest.approx(brute, rel=1e-9, abs=1e-12)
    start = proportional_rows(total, [1.0] * boards)
    balanced = balance_rows(time, start)
    assert sum(balanced) == total and min(balanced) >= 1
    assert brute - 1e-12 <= max_time(time, balanced) <= max_time(time, start)


# -- costs ----------------------------------------------------------------------------------------
def test_halo_is_the_duplicated_work_of_overlapping_strips():
    """Two strips of two stacked 3x3 'same' convs on 8 rows: each strip computes 2 extra rows
    of the first conv (its halo), nothing else is duplicated."""
    b = _Builder(8, 5)
    b.window(OpKind.CONV2D, 3, 1, "same")
    b.window(OpKind.CONV2D, 3, 1, "same")
    graph = b.graph()
    board = TileBoard("a", tuple(1.0 for _ in graph.layers))
    coster = TileCoster(graph, [board, TileBoard("b", board.layer_ms)], TileLink(1e3))
    cost = coster.run_cost(fused_run(graph, 1, 2), [4, 4])
    first_conv_row_macs = graph.layers[1].macs // 8
    assert cost.halo_macs == 2 * first_conv_row_macs
    # scatter: rows 2..8 of x (6 rows); gather: 4 rows of the second conv, fp32, 4 channels
    assert (cost.tiles[1].scatter_bytes, cost.tiles[1].gather_bytes) == (6 * 5 * 4 * 4,
                                                                         4 * 5 * 4 * 4)
    assert cost.tiles[0].scatter_bytes == 0 and cost.tiles[0].transfer_ms == 0


@settings(max_examples=40, deadline=None)
@given(coster=costers(max_boards=3), data=st.data())
def test_strip_tiles_cover_the_run_and_never_exceed_it(coster, data):
    run = _first_run(coster)
    total = coster.graph.tensor(run.output).shape[1]
    boards = data.draw(st.integers(1, min(len(coster.boards), total)))
    rows = data.draw(st.sampled_from(list(_compositions(total, boards))))
    cost = coster.run_cost(run, rows)
    # a tile never computes more than the whole run (it may compute less: rows the model
    # computes but its output never reads, e.g. the last row before a valid stride-2 conv)
    assert all(tile.macs <= cost.run_macs for tile in cost.tiles)
    stitched = [r for tile in cost.tiles for r in range(tile.region.rows.start,
                                                        tile.region.rows.stop)]
    assert stitched == list(range(total))


# -- the DP against exhaustive search -------------------------------------------------------------
def _segment_options(coster: TileCoster, start: int, end: int, run_cost):
    """Latencies of computing positions start..end as one segment: on the root layer by
    layer, one layer split by output channels, or one tiled run over 2..B boards."""
    root = coster.boards[0]
    options = [sum(root.layer_ms[p] for p in range(start, end + 1))]
    if start == end:
        for boards in range(2, len(coster.boards) + 1):
            split = channel_split_cost(coster, start, boards)
            if split is not None:
                options.append(split.latency_ms)
    if _tileable(coster.graph, start, end):
        run = fused_run(coster.graph, start, end)
        for boards in range(2, len(coster.boards) + 1):
            cost = run_cost(coster, run, boards)
            if cost is not None:
                options.append(cost.latency_ms)
    return options


def _exhaustive(coster: TileCoster, run_cost) -> float:
    n = len(coster.graph)
    best = math.inf
    for cuts in itertools.chain.from_iterable(
        itertools.combinations(range(1, n), r) for r in range(n)
    ):
        bounds = list(itertools.pairwise((0, *cuts, n)))
        total = coster.boards[0].overhead_ms + sum(
            min(_segment_options(coster, a, b - 1, run_cost)) for a, b in bounds
        )
        best = min(best, total)
    return best


@settings(max_examples=40, deadline=None)
@given(coster=costers(max_boards=3, max_layers=3),
       run_cost=st.sampled_from([proportional_cost, balanced_cost]))
def test_dp_equals_exhaustive_search(coster, run_cost):
    plan = plan_tiles(coster, run_cost=run_cost, resize=None)
    assert plan.latency_ms == pytest.approx(_exhaustive(coster, run_cost), rel=1e-9)
    resized = plan_tiles(coster, run_cost=run_cost)  # exact strips for the chosen runs
    assert resized.latency_ms <= plan.latency_ms + 1e-9
    # the plan's segments tile the layer order and add up to its latency
    assert [s.start for s in plan.segments] == [0, *(s.end + 1 for s in plan.segments[:-1])]
    assert plan.segments[-1].end == len(coster.graph) - 1
    assert plan.latency_ms == pytest.approx(
        coster.boards[0].overhead_ms + sum(s.latency_ms for s in plan.segments))


def test_dp_tiles_a_heavy_run_on_two_fast_boards():
    b = _Builder(16, 16, channels=8)
    for _ in range(3):
        b.window(OpKind.CONV2D, 3, 1, "same")
    graph = b.graph()
    per_layer = tuple(float(layer.macs or 0) * 1e-4 for layer in graph.layers)
    # with a per-stage overhead and a link latency, one fused run beats a run per layer
    boards = [TileBoard("a", per_layer, overhead_ms=2.0), TileBoard("b", per_layer, 2.0)]
    coster = TileCoster(graph, boards, TileLink(1e6, latency_ms=0.5))
    plan = plan_tiles(coster)
    (run,) = plan.runs
    assert (run.run.start, run.run.end) == (1, 3)
    assert [t.region.rows.size for t in run.tiles] == [8, 8]
    assert plan.latency_ms < 0.7 * (2.0 + sum(per_layer))  # the root alone


@pytest.mark.parametrize("link_name", ["gige", "eth100"])
@pytest.mark.parametrize("frames", [1, 7, 400])
def test_descriptor_link_matches_the_framed_transfer_model(link_name, frames):
    link = load_link(link_name)
    payload = frames * (link.frame_payload_bytes or 1000)
    tile_link = link_from_descriptor(link)
    expected = framed(link, payload, messages=1).latency_ms
    assert tile_link.latency_ms + payload / tile_link.bytes_per_ms == pytest.approx(expected)


def test_a_wide_dense_layer_is_split_by_output_channels():
    """A memory-bound fully connected layer (VGG-16's fc1 in miniature) on two equal boards:
    two halves cost half the layer plus the input over the link on the second board."""
    b = _Builder(4, 4, channels=2)
    b.add(OpKind.RESHAPE, ("x",), (1, 32))
    b.add(OpKind.DENSE, (b.last.name,), (1, 64))
    graph = LayerGraph("fc", tuple(b.layers), outputs=(b.last.name,))
    per_layer = (0.0, 0.0, 10.0)
    coster = TileCoster(graph, [TileBoard("a", per_layer), TileBoard("b", per_layer)],
                        TileLink(bytes_per_ms=128.0, latency_ms=0.25))
    (*_, segment) = plan_tiles(coster).segments
    assert segment.channels is not None
    assert [p.channels.size for p in segment.channels.parts] == [39, 25]
    # board b: 25/64 of 10 ms + 2 x 0.25 ms + (32 + 25) x 4 bytes / 128 bytes/ms; a: 39/64
    assert segment.channels.part_ms == pytest.approx((10 * 39 / 64, 10 * 25 / 64 + 0.5 + 228 / 128))


def test_a_softmax_classifier_is_never_split_by_output_channels():
    """Softmax normalises over all channels: a part cannot compute its slice alone."""
    b = _Builder(4, 4, channels=2)
    b.add(OpKind.RESHAPE, ("x",), (1, 32))
    b.add(OpKind.DENSE, (b.last.name,), (1, 64), activation="softmax")
    graph = LayerGraph("fc", tuple(b.layers), outputs=(b.last.name,))
    per_layer = (0.0, 0.0, 10.0)
    coster = TileCoster(graph, [TileBoard("a", per_layer), TileBoard("b", per_layer)],
                        TileLink(bytes_per_ms=128.0, latency_ms=0.25))
    assert all(s.channels is None for s in plan_tiles(coster).segments)
    with pytest.raises(TilingError, match="channel-wise activation"):
        channel_split(graph, b.last.name, [32, 32])


@settings(max_examples=40, deadline=None)
@given(coster=costers(max_boards=2, max_layers=5), data=st.data())
def test_one_walk_per_run_end_prices_every_run_start_like_its_own_tile_plan(coster, data):
    graph = coster.graph
    for end, runs in tileable_runs(graph).items():
        total = graph.layers[end].outputs[0].shape[1]
        a = data.draw(st.integers(0, total - 1))
        rows = Span(a, data.draw(st.integers(a + 1, total)))
        cols = Span(0, graph.layers[end].outputs[0].shape[2])
        for run in runs:
            assert run == fused_run(graph, run.start, run.end)
            plan = tile_plan(graph, run, Region(rows, cols))
            cost = coster.tile(run, 1 if len(coster.boards) > 1 else 0, rows)
            assert cost.macs == tile_macs(graph, plan)
            if len(coster.boards) > 1:
                assert cost.scatter_bytes == sum(
                    region_bytes(graph, name, region) for name, region in plan.inputs)


@settings(max_examples=40, deadline=None)
@given(coster=costers(max_boards=2, max_layers=5))
def test_best_single_run_equals_brute_force_over_every_run(coster):
    """The one run ``export --tiles`` exports: every (start, end) priced by its definition."""
    graph, root = coster.graph, coster.boards[0]
    n, best = len(graph), math.inf
    boards = len(coster.boards)
    for start, end in itertools.combinations_with_replacement(range(1, n), 2):
        if boards < 2 or not _tileable(graph, start, end):
            continue
        cost = proportional_cost(coster, fused_run(graph, start, end), boards)
        if cost is not None:
            outside = sum(ms for p, ms in enumerate(root.layer_ms) if not start <= p <= end)
            best = min(best, root.overhead_ms + outside + cost.latency_ms)
    found = best_single_run(coster, boards, resize=None) if boards >= 2 else None
    if math.isinf(best):
        assert found is None
    else:
        assert found.latency_ms == pytest.approx(best, rel=1e-12)
        resized = best_single_run(coster, boards)
        assert resized.latency_ms <= found.latency_ms + 1e-12
        assert sum(resized.row_sizes) == graph.tensor(resized.cost.run.output).shape[1]


@settings(max_examples=40, deadline=None)
@given(coster=costers(max_boards=2, max_layers=5), data=st.data())
def test_a_grid_cell_is_priced_like_its_own_tile_plan(coster, data):
    """Any cell (rows × cols) of a run's output: its work and scatter bytes by the walk equal
    the tile plan's, so ``export --tiles A..B:K:RxC`` is priced (it was 'unpriced' before)."""
    graph = coster.graph
    for end, runs in tileable_runs(graph).items():
        _, height, width, _ = graph.layers[end].outputs[0].shape
        a, c = data.draw(st.integers(0, height - 1)), data.draw(st.integers(0, width - 1))
        cell = Region(Span(a, data.draw(st.integers(a + 1, height))),
                      Span(c, data.draw(st.integers(c + 1, width))))
        for run in runs:
            try:
                plan = tile_plan(graph, run, cell)
            except TilingError:
                continue  # a cell lying in padding only: no tile computes it
            cost = coster.tile_region(run, len(coster.boards) - 1, cell)
            assert cost.macs == tile_macs(graph, plan)
            assert cost.region == cell
            if len(coster.boards) > 1:
                assert cost.scatter_bytes == sum(
                    region_bytes(graph, name, region) for name, region in plan.inputs)
                assert cost.gather_bytes == region_bytes(graph, run.output, cell)


def test_a_convolution_whose_weights_are_its_time_is_split_by_channels_not_rows():
    """A row tile of a convolution streams all of its weights, a channel part its share. On a
    small map whose weights are the layer's whole time, rows gain nothing and channels halve
    it: the DP splits the channels. The oracle is the two rules computed by hand."""
    b = _Builder(4, 4, channels=64)
    b.add(OpKind.CONV2D, ("x",), (1, 4, 4, 64), kernel_size=(3, 3), strides=(1, 1),
          dilation_rate=(1, 1), padding="same")
    graph = b.graph()
    conv = 1
    layer_ms = tuple(10.0 if p == conv else 0.0 for p in range(len(graph)))
    boards = [TileBoard(name, layer_ms, weight_ms=layer_ms) for name in "ab"]
    coster = TileCoster(graph, boards, TileLink(1e9))
    assert coster.tile(fused_run(graph, conv, conv), 1, Span(2, 4)).compute_ms == 10.0
    plan = plan_tiles(coster)
    assert plan.runs == ()
    (split,) = [s for s in plan.segments if s.channels is not None]
    assert split.start == conv and [p.channels.size for p in split.channels.parts] == [32, 32]
    assert plan.latency_ms == pytest.approx(5.0, abs=1e-3)  # half the layer, a free link
