"""Every tile of a run reads all of the run's weights: the planner prices that.

Measured on ResNet-50 (``bench/bench_tile_efficiency.py``): two tiles of a 7×7 run took
1.23-1.31× the unsplit run, caches flushed, where their MACs are 1.07×; pricing each layer
by the tile's share of its positions alone predicted them 13-19% low. The oracles here are
hand counts on tiny IR graphs (the rows a tile computes, the weights' bytes and the board's
bandwidth), not the coster's own arithmetic.
"""

from __future__ import annotations

import pytest

from hwsched.costs.runtime import RuntimeCost
from hwsched.hardware import load_platform
from hwsched.ir import Layer, LayerGraph, OpKind, Tensor
from hwsched.tiles.planning import (
    TileBoard,
    TileCoster,
    TileLink,
    boards_from_platforms,
    charge_runtime,
    plan_tiles,
)
from hwsched.tiles.receptive import Span, fused_run

_CONV = {"kernel_size": (3, 3), "strides": (1, 1), "padding": "same", "dilation_rate": (1, 1)}


def _two_convs(rows: int = 8, channels: int = 2) -> LayerGraph:
    """Input, two 3×3 ``same`` convolutions (``channels`` in and out), nothing else."""
    def t(name: str) -> Tensor:
        return Tensor(name, name, (1, rows, rows, channels), "float32")
    params = 9 * channels * channels + channels
    return LayerGraph("two", (
        Layer("x", OpKind.INPUT, (), (t("x"),)),
        Layer("a", OpKind.CONV2D, ("x",), (t("a"),), params=params, attrs=_CONV),
        Layer("b", OpKind.CONV2D, ("a",), (t("b"),), params=params, attrs=_CONV),
    ), outputs=("b",))


def test_a_tile_pays_its_layers_weights_whole() -> None:
    # the top half (rows 0..4) of b: b computes 4 of 8 rows, a computes 5 (one halo row)
    graph = _two_convs()
    run = fused_run(graph, 1, 2)
    shares = {"a": 5 / 8, "b": 4 / 8}
    layer_ms, weight_ms = (0.0, 4.0, 6.0), (0.0, 1.0, 2.0)
    plain = TileCoster(graph, [TileBoard("r", layer_ms)], TileLink(1e9))
    assert plain.tile(run, 0, Span(0, 4)).compute_ms == pytest.approx(
        4.0 * shares["a"] + 6.0 * shares["b"])
    weighed = TileCoster(graph, [TileBoard("r", layer_ms, weight_ms=weight_ms)], TileLink(1e9))
    assert weighed.tile(run, 0, Span(0, 4)).compute_ms == pytest.approx(
        (4.0 - 1.0) * shares["a"] + 1.0 + (6.0 - 2.0) * shares["b"] + 2.0)
    # the whole map is the unsplit run, weights or not
    assert weighed.tile(run, 0, Span(0, 8)).compute_ms == pytest.approx(10.0)


def test_a_weight_bound_run_is_left_unsplit() -> None:
    """A run whose layers only stream weights costs every tile the whole run: tiling it can
    only lose, so the plan keeps it on the root; priced by positions alone it is split."""
    graph = _two_convs()
    layer_ms = (0.0, 4.0, 6.0)
    alone = sum(layer_ms)

    def plan(weight_ms: tuple[float, ...]):
        boards = [TileBoard(name, layer_ms, weight_ms=weight_ms) for name in ("r", "s")]
        return plan_tiles(TileCoster(graph, boards, TileLink(1e9)), channels=False)

    assert plan(()).runs and plan(()).latency_ms < alone
    bound = plan(layer_ms)
    assert not bound.runs and bound.latency_ms == pytest.approx(alone)


def test_boards_from_platforms_stream_the_weights_at_the_memory_bandwidth() -> None:
    graph = _two_convs(rows=7, channels=512)
    rpi4 = load_platform("rpi4")
    (board,) = boards_from_platforms(graph, [rpi4], "fp32")
    kernel_bytes = (9 * 512 * 512 + 512) * 4
    stream_ms = kernel_bytes / (rpi4.memory_bandwidth_gbps * 1e6)
    assert board.weight_ms[0] == 0.0
    for position in (1, 2):
        assert board.weight_ms[position] == pytest.approx(
            min(stream_ms, board.layer_ms[position]))
        assert 0.0 < board.weight_ms[position] <= board.layer_ms[position]


def test_weights_above_a_layers_time_are_capped_at_it() -> None:
    """A profile may time a layer faster than its weights stream at the descriptor's
    bandwidth: a tile then costs at most the whole layer, never more."""
    graph = _two_convs()
    run = fused_run(graph, 1, 2)
    coster = TileCoster(graph, [TileBoard("r", (0.0, 1.0, 1.0), weight_ms=(0.0, 9.0, 9.0))],
                        TileLink(1e9))
    assert coster.tile(run, 0, Span(0, 4)).compute_ms == pytest.approx(2.0)


def test_charging_the_runner_keeps_the_weights() -> None:
    board = TileBoard("r", (0.0, 4.0, 6.0), 0.5, weight_ms=(0.0, 1.0, 2.0))
    (charged,), _ = charge_runtime([board], TileLink(1e3), RuntimeCost.asymmetric(
        sender=(0.1, 1e-6), receiver=(0.2, 3e-6)))
    assert charged.weight_ms == board.weight_ms
    assert charged.hop_ms > board.hop_ms


def test_strips_in_proportion_leave_the_weights_out_of_a_boards_speed() -> None:
    """Two boards equally fast on a run, but half of board a's time is its weights
    streaming: a tile on it pays those 5 ms whole and its rows cost half of board b's, so the
    paths end together near 5 of 16 rows for a (hand count: 5 + 5r/16 = 10(16 - r)/16).
    Speeds from the whole run's time (the weights counted as rows) gave 8/8, 0.6 ms later
    than the best split found by brute force; the DP ranks runs on these strips."""
    from hwsched.tiles.planning import proportional_cost

    graph = _two_convs(rows=16)
    run = fused_run(graph, 1, 2)
    boards = [TileBoard("a", (0.0, 4.0, 6.0), weight_ms=(0.0, 2.0, 3.0)),
              TileBoard("b", (0.0, 4.0, 6.0))]
    coster = TileCoster(graph, boards, TileLink(1e9))
    by_rows = {r: coster.run_cost(run, (r, 16 - r)).latency_ms for r in range(1, 16)}
    best = min(by_rows.values())
    chosen = proportional_cost(coster, run, 2)
    assert chosen.latency_ms <= best * 1.05
    assert chosen.latency_ms < by_rows[8] - 0.4  # the old, equal split
