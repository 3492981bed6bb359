"""The acceleration region: sweep monotone, edge == brute force == Feltin's closed form."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwsched.costs.runtime import RuntimeCost
from hwsched.errors import ScheduleError
from hwsched.hardware import load_link, load_platform
from hwsched.schedule import evaluate
from hwsched.schedule.sweep import (
    EDGE_RTOL,
    log_grid,
    parse_range,
    region_sentence,
    sweep_bandwidth,
)
from hwsched.schedule.synthetic import synthetic_graph

PAIR = ["rpi4", "jetson_nano"]


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 1000), n_layers=st.integers(6, 24))
def test_best_throughput_never_falls_as_bandwidth_grows(seed, n_layers):
    graph = synthetic_graph(n_layers, seed=seed)
    sweep = sweep_bandwidth(graph, PAIR, "gige", 0.1, 10_000.0, points=9)
    throughputs = [p.throughput_ips for p in sweep.points]
    assert throughputs == sorted(throughputs)
    assert all(p.gain >= 1.0 for p in sweep.points)
    # a point pays (has a split) exactly when it is at or above the edge
    for point in sweep.points:
        if sweep.edge_mbps is None:
            assert not point.best_cut_positions
        else:
            pays = bool(point.best_cut_positions)
            assert pays == (point.bandwidth_mbps >= sweep.edge_mbps) or math.isclose(
                point.bandwidth_mbps, sweep.edge_mbps, rel_tol=EDGE_RTOL
            )


def _period(graph, platforms, link, cuts, runtime) -> float:
    """Slowest stage or link; with a runtime cost, each stage's core also pays its hop ends."""
    candidate = evaluate(graph, platforms, link, cuts)
    if runtime is None:
        return candidate.period_ms
    sizes = [graph.layers[0].outputs[0].bytes, *(lk.transfer_bytes for lk in candidate.links),
             graph.tensor(graph.outputs[0]).bytes]
    n = len(candidate.stages)
    stages = [s.cost.latency_ms + runtime.end_ms(sizes[k]) * (2 if k == 0 else 1)
              + runtime.end_ms(sizes[k + 1]) * (2 if k == n - 1 else 1)
              for k, s in enumerate(candidate.stages)]
    return max([*stages, *(lk.latency_ms for lk in candidate.links)])


def _pays_by_brute_force(graph, link, bandwidth_mbps: float, runtime=None) -> bool:
    """Any split strictly faster than the best single board, every cut evaluated."""
    fast = dataclasses.replace(link, bandwidth_bps=bandwidth_mbps * 1e6)
    single = min(_period(graph, [p], fast, (), runtime) for p in PAIR)
    return any(
        _period(graph, PAIR, fast, (cut,), runtime) < single for cut in range(1, len(graph))
    )


@pytest.mark.parametrize("runtime", [None, RuntimeCost(frame_ms=0.05, per_byte_ms=2e-6)])
def test_edge_agrees_with_brute_force_on_a_fine_grid(runtime):
    graph = synthetic_graph(10, seed=3)
    link = load_link("gige")
    sweep = sweep_bandwidth(graph, PAIR, link, 1.0, 1000.0, points=4, runtime=runtime)
    assert sweep.edge_mbps is not None
    fine = log_grid(sweep.edge_mbps / 4, sweep.edge_mbps * 4, 41)
    paying = [_pays_by_brute_force(graph, link, b, runtime) for b in fine]
    first = paying.index(True)
    assert not any(paying[:first]) and all(paying[first:])  # one interval
    assert fine[first - 1] < sweep.edge_mbps <= fine[first] * (1 + EDGE_RTOL)
    assert _pays_by_brute_force(graph, link, sweep.edge_mbps, runtime)
    assert not _pays_by_brute_force(graph, link, sweep.edge_mbps / (1 + 2 * EDGE_RTOL), runtime)


def test_edge_is_feltins_closed_form_for_two_equal_boards_on_an_ideal_link():
    """Two equal boards, bandwidth-only link: the edge is min over cuts of 8 s / T*."""
    graph = synthetic_graph(16, seed=5)
    board = load_platform("rpi4")
    twin = dataclasses.replace(board, name="rpi4_twin")
    link = load_link("gige")
    single_ms = evaluate(graph, [board], link, ()).period_ms
    crossing = [
        evaluate(graph, [board, twin], link, (cut,)).links[0].transfer_bytes
        for cut in range(1, len(graph))
    ]
    feltin_mbps = min(crossing) * 8 / (single_ms / 1000) / 1e6
    sweep = sweep_bandwidth(graph, [board, twin], link, 1.0, 10_000.0, points=5,
                            transfer_model="ideal")
    assert sweep.edge_mbps == pytest.approx(feltin_mbps, rel=2 * EDGE_RTOL)


def test_a_link_too_slow_at_any_bandwidth_has_no_edge():
    """A per-message latency above the single board's time can never be paid back."""
    graph = synthetic_graph(8, seed=1)
    slow = dataclasses.replace(load_link("gige"), message_latency_ms=1e6)
    sweep = sweep_bandwidth(graph, PAIR, slow, 1.0, 100.0, points=3)
    assert sweep.edge_mbps is None
    assert all(p.best_cut_positions == () and p.gain == 1.0 for p in sweep.points)


@pytest.mark.parametrize("text", ["10", "a:b", "0:10", "100:10", "1:10:1", "1:10:x"])
def test_bad_ranges_are_one_clear_error(text):
    with pytest.raises(ScheduleError, match="Mbit/s"):
        parse_range(text)


def test_analyze_sweep_writes_points_and_edge(tmp_path, capsys):
    from hwsched.cli import main

    out = tmp_path / "a.json"
    # a slow link between equal-speed boards, so that the edge falls inside the range
    argv = ["analyze", "digits_cnn", "--platforms", "rpi4,rpi5", "--link", "eth100",
            "--sweep-bandwidth", "0.01:10000:7", "--report", str(tmp_path / "r.html"),
            "--json", str(out)]
    assert main(argv) == 0
    doc = json.loads(out.read_text())
    points = doc["bandwidth_sweep"]
    assert [round(p["bandwidth_mbps"], 6) for p in points] == [0.01, 0.1, 1, 10, 100, 1e3, 1e4]
    assert {"bandwidth_mbps", "best_cut_positions", "throughput_ips", "gain"} <= set(points[0])
    edge = doc["bandwidth_sweep_edge"]
    printed = capsys.readouterr().out
    page = (tmp_path / "r.html").read_text()
    assert 'id="chart-region"' in page and 'id="region-sentence"' in page
    # eth100 between two CPU boards: too slow at 100 Mbit/s, fast enough at 10 Gbit/s
    assert 100 < edge["edge_mbps"] < 10_000
    assert not points[4]["best_cut_positions"] and points[6]["best_cut_positions"]
    assert region_sentence(edge["edge_mbps"]) in printed and region_sentence(
        edge["edge_mbps"]) in page


def test_analyze_rejects_a_bad_sweep_before_loading_the_model(capsys):
    from hwsched.cli import main

    assert main(["analyze", "no_such_model", "--sweep-bandwidth", "5:1"]) == 2
    err = capsys.readouterr().err
    assert "--sweep-bandwidth '5:1'" in err and "unknown model" not in err


def test_docstring_examples_run():
    import doctest

    import hwsched.schedule.sweep

    result = doctest.testmod(hwsched.schedule.sweep)
    assert result.attempted > 0 and result.failed == 0
