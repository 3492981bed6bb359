"""The pure helpers of ``bench_fidelity`` and ``bench_region`` (and ``benchlib``) that decide
what a long benchmark run measures and reports, each against an oracle of its own.

Failed before (issue 17's review): cuts were sampled by list position (six of ten in
inception_v3's stem); the measured edge was interpolated in gain, not log(gain); regret was
only a ratio of medians mixing rounds; and a run's children were given 0.5 s per frame
whatever the shaped link's predicted period."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

BENCH = Path(__file__).resolve().parents[1] / "bench"


def _load(name: str):
    sys.path.insert(0, str(BENCH))  # the benches import benchlib by name
    spec = importlib.util.spec_from_file_location(f"{name}_helpers_test", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def fidelity():
    return _load("bench_fidelity")


@pytest.fixture(scope="module")
def region():
    return _load("bench_region")


@pytest.fixture(scope="module")
def benchlib():
    return _load("benchlib")


# -- cuts sampled by MAC fraction --------------------------------------------------------------
def test_a_stem_of_cheap_cuts_gets_one_sample_not_most(fidelity):
    # ten cuts in a cheap stem (1% of the work), then five over the rest: by list position
    # 10 samples put ~7 in the stem; by MAC fraction the stem gets the one nearest 5%
    stem = [(k, float(k)) for k in range(1, 11)]
    body = [(10 + k, 10.0 + k * 198.0) for k in range(1, 6)]
    picked = fidelity.cuts_by_mac_fraction(stem + body, 1000.0, 5)
    assert picked == [10, 11, 12, 13, 14]  # hand-computed: targets 100, 300, 500, 700, 900


def test_collisions_are_topped_up_to_count(fidelity):
    # targets 12.5, 37.5, 62.5, 87.5 all nearest (90, pos 3) except the first: the greedy
    # fill gives four distinct cuts, as --samples promises when the model has them
    cum = [(1, 5.0), (2, 10.0), (3, 90.0), (4, 95.0)]
    assert fidelity.cuts_by_mac_fraction(cum, 100.0, 4) == [1, 2, 3, 4]
    assert fidelity.cuts_by_mac_fraction(cum, 100.0, 9) == [1, 2, 3, 4]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(0.0, 1e6, allow_nan=False), min_size=1, max_size=25, unique=True),
       st.integers(1, 30))
def test_sampling_matches_brute_force_nearest_when_no_two_targets_share_a_cut(
        fidelity, macs, count):
    cum = sorted(macs)
    pairs = [(k + 1, m) for k, m in enumerate(cum)]
    total = cum[-1] * 1.1 + 1.0
    picked = fidelity.cuts_by_mac_fraction(pairs, total, count)
    assert len(picked) == len(set(picked)) == min(count, len(pairs))
    nearest = [min(pairs, key=lambda pm, i=i: (abs(pm[1] - (i + 0.5) / count * total), pm[0]))[0]
               for i in range(count)]
    if len(set(nearest)) == len(nearest):  # no collision: exactly each target's nearest
        assert picked == sorted(nearest)
    assert nearest[0] in picked  # the first target always gets its nearest


def test_sampled_cuts_on_a_graph_use_the_heads_macs(fidelity):
    from hwsched.cuts import enumerate_cuts
    from hwsched.schedule.synthetic import synthetic_graph

    graph = synthetic_graph(30, seed=3)
    single = [c.head_layers for c in enumerate_cuts(graph) if c.single_tensor]
    assert len(single) > 4
    # the head's MACs summed layer by layer, independently of the bench's running sum
    pairs = [(k, float(sum(layer.macs for layer in graph.layers[:k]))) for k in single]
    total = float(sum(layer.macs for layer in graph.layers))
    expected = fidelity.cuts_by_mac_fraction(pairs, total, 4)
    rank1 = (single[-1],)
    assert fidelity.sampled_cuts(graph, 4, rank1) == sorted({(k,) for k in expected} | {rank1})


# -- the measured edge, log(gain) against log(bandwidth) ---------------------------------------
@settings(max_examples=200, deadline=None)
@given(st.floats(0.5, 5000.0), st.floats(0.2, 3.0), st.floats(-1.0, 1.0))
def test_a_power_law_gain_gives_its_edge_back(region, edge, alpha, shift):
    # gain = (b / edge)^alpha is a straight line in log-log: the interpolation is exact
    grid = [edge * 8.0 ** ((i + shift * 0.49) / 2.5 - 1.0) for i in range(6)]
    gains = [(b / edge) ** alpha for b in grid]
    found = region.measured_edge(grid, gains)
    if any(g <= 1.0 for g in gains) and any(g > 1.0 for g in gains):
        assert found == pytest.approx(edge, rel=1e-9)


def test_linear_in_gain_would_miss_the_log_log_edge(region):
    # hand-computed: gains 0.5 at 1 and 2 at 4; log-log gives 2; linear in gain gave 1.59
    assert region.measured_edge([1.0, 4.0], [0.5, 2.0]) == pytest.approx(2.0)


def test_no_crossing_or_a_missing_point_gives_no_edge(region):
    assert region.measured_edge([1.0, 2.0, 4.0], [1.2, 1.5, 2.0]) is None
    assert region.measured_edge([1.0, 2.0, 4.0], [0.2, 0.5, 0.9]) is None
    assert region.measured_edge([1.0, 2.0, 4.0], [0.5, None, 2.0]) is None
    # the first upward crossing counts
    assert region.measured_edge([1.0, 2.0, 4.0, 8.0], [0.5, 2.0, 0.5, 2.0]) == pytest.approx(
        math.sqrt(2.0))


# -- regret per round ----------------------------------------------------------------------
def test_regret_per_round_against_each_rounds_best(benchlib):
    ips = {"rank1": [100.0, 90.0, 80.0], "a": [110.0, 85.0, None], "b": [95.0, 99.0, 70.0]}
    ratios = benchlib.per_round_best_ratio(ips, "rank1")
    assert ratios == pytest.approx([100 / 110, 90 / 99, 1.0])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(st.floats(1.0, 1e4), min_size=3, max_size=3), min_size=1,
                max_size=6))
def test_regret_per_round_is_brute_force_and_never_negative(benchlib, table):
    ips = {f"cut{k}": row for k, row in enumerate(table)}
    ratios = benchlib.per_round_best_ratio(ips, "cut0")
    for r in range(3):
        assert ratios[r] == pytest.approx(table[0][r] / max(row[r] for row in table))
        assert 0.0 < ratios[r] <= 1.0


# -- the slow link's run: resend timeout and children's time limit -------------------------------
def test_resend_timeout_grows_with_the_predicted_link_time(region):
    assert region.resend_after_s(1.0, 8) == 1.0  # the runtime's default floor
    assert region.resend_after_s(125.0, 8) == pytest.approx(3.0)  # 3 windows of 8 x 125 ms


def test_children_are_given_frames_times_the_expected_period(tmp_path):
    from hwsched.runtime.emulate import EmulationConfig, _common

    argv = _common(EmulationConfig(frames=200, expected_period_s=2.0), tmp_path, "stage0")
    assert float(argv[argv.index("--max-runtime") + 1]) >= 200 * 2.0


def test_docstring_examples_run(fidelity, region, benchlib):
    import doctest

    for module in (fidelity, region, benchlib):
        result = doctest.testmod(module)
        assert result.attempted > 0 and result.failed == 0, module.__name__


def test_an_unknown_model_is_refused_before_the_run(benchlib, tmp_path):
    model_file = tmp_path / "mine.tflite"
    model_file.write_bytes(b"x")
    assert benchlib.unknown_model("mobilenet_v3_small") is None
    assert benchlib.unknown_model(str(model_file)) is None
    problem = benchlib.unknown_model("mobilenet_v3_smal")
    assert "'mobilenet_v3_smal'" in problem and "mobilenet_v3_small" in problem
    assert "\n" not in problem
