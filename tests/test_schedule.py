"""The solver against brute force, Pareto flags, feasibility, baselines and the JSON shape."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hwsched.costs.profile import Profile, Segment
from hwsched.cuts import crossing_at
from hwsched.errors import ProfileError, ScheduleError, UnknownNameError
from hwsched.hardware import load_platform
from hwsched.ir import Layer, LayerGraph, OpKind, Tensor
from hwsched.schedule import DEFAULT_LINK, DEFAULT_PLATFORMS, evaluate, k_best, rank_splits
from hwsched.schedule.context import CostOptions, build_context
from hwsched.schedule.synthetic import synthetic_graph
from hwsched.schedule.tables import build_platform_table, peak_matrix

BOARDS = ("rpi4", "rpi5", "jetson_nano", "jetson_orin_nano")
LINKS = ("gige", "eth100", "wifi")
INF = float("inf")


# -- the DP alone ----------------------------------------------------------------------------
def brute_force(stages, links, how, k):
    size = stages[0].shape[0]
    values = []
    for cuts in itertools.combinations(range(1, size - 1), len(stages) - 1):
        bounds = (0, *cuts, size - 1)
        parts = [m[a, b] for m, (a, b) in zip(stages, itertools.pairwise(bounds), strict=True)]
        parts += [v[c] for v, c in zip(links, cuts, strict=True)]
        value = sum(parts) if how == "sum" else max(parts)
        if value < INF:
            values.append(value)
    return sorted(values)[:k]


@settings(max_examples=60, deadline=None)
@given(
    n_layers=st.integers(3, 8),
    n_stages=st.integers(2, 4),
    how=st.sampled_from(["sum", "max"]),
    k=st.integers(1, 6),
    seed=st.integers(0, 10_000),
)
def test_k_best_matches_brute_force(n_layers, n_stages, how, k, seed):
    if n_stages > n_layers:
        return
    rng = np.random.default_rng(seed)
    size = n_layers + 1

    def matrix():
        m = np.round(rng.uniform(0, 10, (size, size)), 1)  # ties on purpose
        m[rng.uniform(size=(size, size)) < 0.15] = INF  # some infeasible stages
        m[np.tril_indices(size)] = INF
        return m

    stages = [matrix() for _ in range(n_stages)]
    links = []
    for _ in range(n_stages - 1):
        v = np.round(rng.uniform(0, 3, size), 1)
        v[0] = v[-1] = INF
        links.append(v)
    got = k_best(stages, links, how, k)
    assert [value for value, _ in got] == pytest.approx(brute_force(stages, links, how, k))
    for value, cuts in got:  # every reported split really has its value
        bounds = (0, *cuts, n_layers)
        parts = [m[a, b] for m, (a, b) in zip(stages, itertools.pairwise(bounds), strict=True)]
        parts += [v[c] for v, c in zip(links, cuts, strict=True)]
        assert (sum(parts) if how == "sum" else max(parts)) == pytest.approx(value)


# -- the planner against brute force ---------------------------------------------------------
def all_splits(graph, order, link, **opts):
    ctx, _ = build_context(
        graph, [load_platform(p) for p in order], link, CostOptions(**opts)
    )
    return [
        ctx.evaluate(tuple(order), cuts)
        for cuts in itertools.combinations(range(1, len(graph)), len(order) - 1)
    ]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n_layers=st.integers(4, 10),
    seed=st.integers(0, 1000),
    order=st.permutations(BOARDS).map(lambda p: p[:3]),
    link=st.sampled_from(LINKS),
    objective=st.sampled_from(["throughput", "latency", "energy"]),
    top=st.integers(1, 5),
)
def test_plan_top_k_matches_brute_force(n_layers, seed, order, link, objective, top):
    graph = synthetic_graph(n_layers, seed=seed)
    result = rank_splits(graph, order, link, objective=objective, top=top)
    everything = all_splits(graph, order, link)
    expected = sorted(c.objective_value(objective) for c in everything if c.feasible)[:top]
    listed = [c for c in result.candidates if c.rank <= top]
    assert [c.objective_value(objective) for c in listed] == pytest.approx(expected)
    # rank 1 is also best on the tie-breaks (the other objectives, in order)
    others = [o for o in ("throughput", "latency", "energy") if o != objective]
    best = min(
        everything,
        key=lambda c: (
            not c.feasible,
            c.objective_value(objective),
            *(c.objective_value(o) for o in others),
        ),
    )
    assert result.best.objective_value(objective) == pytest.approx(best.objective_value(objective))
    assert result.best.objective_value(others[0]) == pytest.approx(best.objective_value(others[0]))


@settings(max_examples=10, deadline=None)
@given(
    n_layers=st.integers(3, 7),
    seed=st.integers(0, 1000),
    objective=st.sampled_from(["throughput", "latency", "energy"]),
)
def test_auto_assignment_is_the_best_order(n_layers, seed, objective):
    graph = synthetic_graph(n_layers, seed=seed)
    boards = ("rpi4", "jetson_nano", "rpi5")
    auto = rank_splits(graph, boards, "gige", objective=objective, assign="auto", top=1)
    best = min(
        rank_splits(graph, order, "gige", objective=objective, top=1)
        .best.objective_value(objective)
        for order in itertools.permutations(boards)
    )
    assert auto.best.objective_value(objective) == pytest.approx(best)


def test_two_way_lists_every_cut_and_pareto_flags_are_exact():
    graph = synthetic_graph(30, seed=4)
    # gige: on eth100 a single board dominates every split once links carry float32 as sent
    result = rank_splits(graph, ["rpi4", "jetson_nano"], "gige")
    assert sorted(c.cut_positions for c in result.candidates) == [(k,) for k in range(1, 30)]
    assert [c.rank for c in result.candidates] == list(range(1, 30))
    periods = [c.period_ms for c in result.candidates]
    assert periods == sorted(periods)
    # a split a single board beats on every objective is not Pareto-optimal either
    feasible = [c for c in (*result.candidates, *result.baselines) if c.feasible]
    for c in result.candidates:
        dominated = any(
            o.period_ms <= c.period_ms
            and o.latency_ms <= c.latency_ms
            and o.energy_mj <= c.energy_mj
            and (o.period_ms, o.latency_ms, o.energy_mj) != (c.period_ms, c.latency_ms, c.energy_mj)
            for o in feasible
        )
        assert c.pareto == (c.feasible and not dominated)
    assert any(c.pareto for c in result.candidates)


def test_a_split_dominated_by_a_single_board_is_not_pareto():
    graph = synthetic_graph(40, seed=1)
    result = rank_splits(graph, ["rpi4", "jetson_nano"], "gige")
    jetson = next(b for b in result.baselines if b.assignment == ("jetson_nano",))
    for c in result.candidates:
        if (jetson.period_ms <= c.period_ms and jetson.latency_ms <= c.latency_ms
                and jetson.energy_mj < c.energy_mj):
            assert not c.pareto


def test_a_board_whose_active_power_equals_idle_power_plans(tmp_path):
    import yaml

    from hwsched.hardware import BUILTIN_DIR

    data = yaml.safe_load((BUILTIN_DIR / "platforms" / "rpi4.yaml").read_text())
    data["name"] = "flat_rpi4"
    data["power"]["active_w"] = dict(data["power"]["idle_w"])
    path = tmp_path / "flat_rpi4.yaml"
    path.write_text(yaml.safe_dump(data))
    result = rank_splits(synthetic_graph(20, seed=2), ["jetson_nano", str(path), "rpi5"], "gige",
                  objective="energy")
    assert result.candidates and all(np.isfinite(c.energy_mj) for c in result.candidates)


def test_unknown_precision_and_stray_profiles_are_errors():
    graph = synthetic_graph(10, seed=3)
    with pytest.raises(UnknownNameError, match="unknown precision 'bf16'"):
        rank_splits(graph, ["rpi4", "rpi5"], "gige", precision="bf16")
    stray = Profile(model=graph.name, platform="jetson_nano", segments=(), source="p.json")
    with pytest.raises(ProfileError, match="p.json: profile is for platform 'jetson_nano'"):
        rank_splits(graph, ["rpi4", "rpi5"], "gige", profile=stray)


# -- costs in the plan ---------------------------------------------------------------------
def test_plan_totals_are_consistent():
    graph = synthetic_graph(12, seed=1)
    c = evaluate(graph, ["rpi4", "jetson_nano", "rpi5"], "gige", [4, 8])
    stage_ms = [s.cost.latency_ms for s in c.stages]
    link_ms = [lk.latency_ms for lk in c.links]
    assert c.latency_ms == pytest.approx(sum(stage_ms) + sum(link_ms))
    assert c.period_ms == pytest.approx(max(stage_ms + link_ms))
    assert c.throughput_ips == pytest.approx(1000 / c.period_ms)
    rpi4 = load_platform("rpi4")
    first = c.stages[0]
    assert first.energy_mj == pytest.approx(
        rpi4.active_power_w * first.cost.latency_ms
        + rpi4.idle_power_w * (c.period_ms - first.cost.latency_ms)
    )
    assert c.energy_mj == pytest.approx(
        sum(s.energy_mj for s in c.stages) + sum(lk.energy_mj for lk in c.links)
    )
    # fp32 head to fp16 tail: the crossing tensor travels as the head made it, float32
    assert c.links[0].dtype == "float32"
    crossing = crossing_at(graph, 4)  # l3 and the block input feeding the residual add l4
    assert [t.name for t in crossing] == ["input", "l3"] and c.links[0].messages == 2
    assert c.links[0].transfer_bytes == sum(t.elements * 4 for t in crossing)
    with pytest.raises(ScheduleError, match=r"do not split 12 layers into 3 non-empty stages"):
        evaluate(graph, ["rpi4", "jetson_nano", "rpi5"], "gige", [4, 4])


def tiny_with_unsupported_op():
    def t(n):
        return Tensor(n, producer=n, shape=(1, 16), dtype="float32")

    return LayerGraph(
        "odd",
        (
            Layer("x", OpKind.INPUT, (), (t("x"),)),
            Layer("fc", OpKind.DENSE, ("x",), (t("fc"),), params=272, macs=256, flops=512),
            Layer("mm", OpKind.MATMUL, ("fc", "fc"), (t("mm"),), macs=256, flops=512),
            Layer("fc2", OpKind.DENSE, ("mm",), (t("fc2"),), params=272, macs=256, flops=512),
        ),
        outputs=("fc2",),
    )


def test_unsupported_op_makes_the_assignment_infeasible_with_a_reason():
    result = rank_splits(tiny_with_unsupported_op(), ["coral_edgetpu", "rpi4"], "gige")
    feasible = [c for c in result.candidates if c.feasible]
    # the matmul (position 2) must run on the Pi: only cuts 1 and 2 are feasible
    assert sorted(c.cut_positions for c in feasible) == [(1,), (2,)]
    bad = next(c for c in result.candidates if c.cut_positions == (3,))
    assert "coral_edgetpu cannot run op 'matmul' (layer 'mm'" in bad.reasons[0]
    coral_alone = next(b for b in result.baselines if b.assignment == ("coral_edgetpu",))
    assert not coral_alone.feasible
    assert result.best_baseline == "rpi4"


def test_precision_the_platform_lacks_is_infeasible():
    result = rank_splits(synthetic_graph(6, seed=0), ["jetson_nano", "rpi4"], "gige",
                         precision="int8")
    assert not any(c.feasible for c in result.candidates)
    assert "jetson_nano does not run int8" in result.candidates[0].reasons[0]
    assert result.speedup is None


def test_memory_limit_shows_in_fits_memory():
    graph = synthetic_graph(9, seed=2)
    result = rank_splits(graph, ["stm32h7", "rpi4"], "uart921600")
    for candidate in result.candidates:
        head = candidate.stages[0]
        assert head.cost.fits_memory == (
            head.cost.weights_bytes <= 2 * 1024 * 1024
            and head.cost.peak_activation_bytes <= int(1.375 * 1024 * 1024)
        )
        assert candidate.feasible == all(s.cost.feasible for s in candidate.stages)


def test_speedup_is_rank_one_over_best_feasible_baseline():
    result = rank_splits(synthetic_graph(40, seed=5), list(DEFAULT_PLATFORMS), DEFAULT_LINK)
    best_base = max((b for b in result.baselines if b.feasible), key=lambda b: b.throughput_ips)
    assert result.speedup == pytest.approx(result.best.throughput_ips / best_base.throughput_ips)
    assert result.best_baseline == best_base.assignment[0]


def test_to_dict_has_the_issue_fields():
    data = rank_splits(
        synthetic_graph(10, seed=3), ["rpi4", "jetson_nano", "rpi5"], "wifi", top=3
    ).to_dict()
    candidate = data["candidates"][0]
    assert {
        "rank",
        "cut_positions",
        "stages",
        "links",
        "latency_ms",
        "throughput_ips",
        "energy_mj",
        "feasible",
        "pareto",
    } <= set(candidate)
    assert {
        "platform",
        "first_layer",
        "last_layer",
        "macs",
        "weights_bytes",
        "peak_activation_bytes",
        "memory_bytes",
        "latency_ms",
        "energy_mj",
        "fits_memory",
    } <= set(candidate["stages"][0])
    assert {"link", "transfer_bytes", "latency_ms", "energy_mj"} <= set(candidate["links"][0])
    assert len(candidate["cut_positions"]) == 2 and candidate["rank"] == 1
    assert [b["platform"] for b in data["baselines"]] == ["rpi4", "jetson_nano", "rpi5"]
    assert "speedup" in data


def test_argument_errors():
    graph = synthetic_graph(3, seed=0)
    with pytest.raises(UnknownNameError, match=r"unknown objective 'speed'"):
        rank_splits(graph, ["rpi4"], "gige", objective="speed")
    with pytest.raises(UnknownNameError, match=r"unknown assign mode 'magic'"):
        rank_splits(graph, ["rpi4"], "gige", assign="magic")
    with pytest.raises(ScheduleError, match=r"cannot split 3 layers of 'synthetic' into 4 stages"):
        rank_splits(graph, list(BOARDS), "gige")
    with pytest.raises(ScheduleError, match=r"stages 3 is more than the 2 boards given"):
        rank_splits(graph, ["rpi4", "rpi4"], "gige", stages=3)


def test_render_candidates_prints_the_gain():
    from rich.console import Console

    from hwsched.report.candidates import render_candidates

    console = Console(record=True, width=200)
    ranking = rank_splits(synthetic_graph(20, seed=1), ["rpi4", "jetson_nano"], "gige")
    render_candidates(ranking, console)
    text = console.export_text()
    assert "each platform alone" in text
    assert "Best split (rank 1) vs best single platform" in text


def big_dense_graph():
    """3 layers x 4 MiB of int8 weights: more than the Edge TPU's 8 MiB parameter cache."""
    mib = 1024 * 1024
    x = Tensor("x", "x", (1, 1024), "int8")
    layers = [Layer("x", OpKind.INPUT, (), (x,))]
    for i in range(3):
        prev = layers[-1].name
        layers.append(Layer(f"d{i}", OpKind.DENSE, (prev,), (Tensor(f"d{i}", f"d{i}", (1, 1024),
                            "int8"),), params=4 * mib, weight_bytes=4 * mib, macs=4 * mib,
                            flops=8 * mib))
    return LayerGraph("big", tuple(layers), ("d2",))


def test_measured_latency_already_contains_parameter_streaming():
    graph = big_dense_graph()
    measured = Profile(model="big", platform="coral_edgetpu",
                       segments=(Segment("x", "d2", 42.0),), source="p.json")
    with_profile = evaluate(graph, ["coral_edgetpu"], "gige", [], profile=measured)
    assert with_profile.latency_ms == pytest.approx(42.0)
    roofline = evaluate(graph, ["coral_edgetpu"], "gige", [])
    assert roofline.latency_ms != pytest.approx(42.0)


def test_feasible_matrix_follows_the_peak_it_is_given():
    # the matrix used to be cached on the first call and returned for any later peak
    graph = synthetic_graph(8, seed=1)
    table = build_platform_table(graph, load_platform("stm32h7"), "int8")
    real = table.feasible_matrix(peak_matrix(table.live))
    huge = table.feasible_matrix(np.full_like(peak_matrix(table.live), 1 << 40))
    assert real.any() and not huge.any()


def test_parameter_streaming_follows_the_latencies_flag_not_the_model_name():
    from dataclasses import replace

    from hwsched.costs.latency import roofline

    graph = big_dense_graph()
    coral = load_platform("coral_edgetpu")
    table = build_platform_table(graph, coral, "int8")
    weights = int(table.weight_prefix[-1])
    assert weights > coral.param_cache_bytes  # the whole graph spills the parameter cache
    streamed = table.stage(0, len(graph)).latency_ms
    # a calibrated model of another name whose times already contain the streaming
    measured_like = replace(roofline(graph, coral, "int8"), model="calibrated",
                            includes_param_streaming=True)
    flagged = replace(table, latencies=measured_like, _latency=None)
    own = float(measured_like.latency_ms.sum()) + coral.invoke_overhead_ms
    assert flagged.stage(0, len(graph)).latency_ms == pytest.approx(own)
    assert streamed > own
    assert flagged.latency_matrix()[0, len(graph)] == pytest.approx(own)
