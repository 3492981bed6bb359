"""Clusters: repeated boards, ``stages="auto"`` and the multiset assignment, each against an
exhaustive search that shares nothing with the planner's searches but the cost of one split."""

from __future__ import annotations

import itertools
from collections import Counter

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hwsched.errors import ScheduleError
from hwsched.hardware import BUILTIN_DIR, load_platform
from hwsched.schedule import assign as assign_module
from hwsched.schedule import rank_splits
from hwsched.schedule.assign import count_orders, multiset_orders
from hwsched.schedule.context import CostOptions, build_context
from hwsched.schedule.multiset import min_bottleneck_order, min_latency_order
from hwsched.schedule.synthetic import synthetic_graph

OBJECTIVES = ("throughput", "latency", "energy")
KINDS = ("rpi4", "jetson_nano", "rpi5", "coral_edgetpu")
SLOW = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def exhaustive(graph, boards, link, objective, counts, orders_of):
    """The best objective value over every stage count, every order ``orders_of(k)`` and
    every cut, feasible splits only (None if there is none)."""
    ctx, _ = build_context(graph, [load_platform(b) for b in boards], link, CostOptions())
    values = [
        ctx.evaluate(order, cuts).objective_value(objective)
        for k in counts
        for order in orders_of(k)
        for cuts in itertools.combinations(range(1, len(graph)), k - 1)
        if ctx.evaluate(order, cuts).feasible
    ]
    return min(values) if values else None


def copy_descriptor(tmp_path, name, new_name):
    data = yaml.safe_load((BUILTIN_DIR / "platforms" / f"{name}.yaml").read_text())
    data["name"] = new_name
    path = tmp_path / f"{new_name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


# -- identical boards are distinct copies of one descriptor -----------------------------------
@pytest.mark.parametrize("objective", OBJECTIVES)
@pytest.mark.parametrize("assign", ["fixed", "auto"])
@pytest.mark.parametrize("stages", [None, "auto"])
def test_identical_boards_rank_like_distinct_copies(tmp_path, objective, assign, stages):
    graph = synthetic_graph(14, seed=3)
    copy = copy_descriptor(tmp_path, "rpi4", "rpi4_copy")
    same = rank_splits(graph, ["rpi4", "jetson_nano", "rpi4"], "eth100", objective, assign,
                       top=4, stages=stages)
    copies = rank_splits(graph, ["rpi4", "jetson_nano", copy], "eth100", objective, assign,
                         top=4, stages=stages)

    def values(ranking):
        return [c.objective_value(objective) for c in ranking.candidates if c.rank <= 4]

    if assign == "fixed":
        assert values(same) == pytest.approx(values(copies))
    # with assign="auto" the copies also list orders that only swap the two Pis (each split
    # twice); identical boards list it once, so only rank 1 compares
    assert same.best.objective_value(objective) == pytest.approx(
        copies.best.objective_value(objective))
    assert same.best.cut_positions == copies.best.cut_positions
    renamed = tuple(p.replace("rpi4_copy", "rpi4") for p in copies.best.assignment)
    assert same.best.assignment == renamed


def test_boards_are_labelled_by_instance_and_platform_stays_the_descriptor():
    ranking = rank_splits(synthetic_graph(20, seed=1), ["rpi4"] * 3, "gige", stages=3)
    assert ranking.boards == ("rpi4#1", "rpi4#2", "rpi4#3")
    stages = ranking.to_dict()["candidates"][0]["stages"]
    assert [s["platform"] for s in stages] == ["rpi4"] * 3
    assert [s["board"] for s in stages] == ["rpi4#1", "rpi4#2", "rpi4#3"]
    assert [b["platform"] for b in ranking.to_dict()["baselines"]] == ["rpi4"]


def test_two_descriptors_sharing_a_name_are_refused(tmp_path):
    data = yaml.safe_load((BUILTIN_DIR / "platforms" / "rpi4.yaml").read_text())
    data["memory"]["ram_mib"] = {"value": 1, "estimate": "a smaller board under the same name"}
    path = tmp_path / "small.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ScheduleError, match="two different descriptors are both named 'rpi4'"):
        rank_splits(synthetic_graph(6), ["rpi4", str(path)], "gige")


# -- stages="auto" is the best over every number of stages ------------------------------------
@SLOW
@given(
    n_layers=st.integers(3, 7),
    seed=st.integers(0, 500),
    boards=st.lists(st.sampled_from(KINDS[:3]), min_size=1, max_size=4),
    link=st.sampled_from(["gige", "wifi", "ble"]),
    objective=st.sampled_from(OBJECTIVES),
    assign=st.sampled_from(["fixed", "auto"]),
)
def test_stages_auto_is_the_best_over_every_stage_count(
    n_layers, seed, boards, link, objective, assign
):
    graph = synthetic_graph(n_layers, seed=seed)
    ranking = rank_splits(graph, boards, link, objective, assign, top=1, stages="auto")
    counts = range(1, min(len(boards), n_layers) + 1)
    if assign == "fixed":
        orders_of = lambda k: [tuple(boards[:k])]  # noqa: E731
    else:
        orders_of = lambda k: set(itertools.permutations(boards, k))  # noqa: E731
    expected = exhaustive(graph, boards, link, objective, counts, orders_of)
    assert ranking.best.objective_value(objective) == pytest.approx(expected)
    used = Counter(ranking.best.boards)
    assert all(n == 1 for n in used.values()) and set(used) <= set(ranking.boards)
    assert set(ranking.idle_boards) == set(ranking.boards) - set(used)


# -- the multiset assignment ------------------------------------------------------------------
@settings(max_examples=40, deadline=None)
@given(counts=st.dictionaries(st.sampled_from("abcd"), st.integers(1, 3), min_size=1),
       data=st.data())
def test_distinct_orders_are_the_distinct_permutations(counts, data):
    letters = [name for name, n in counts.items() for _ in range(n)]
    length = data.draw(st.integers(1, len(letters)))
    expected = set(itertools.permutations(letters, length))
    listed = list(multiset_orders(counts, length))
    assert len(listed) == len(set(listed)) and set(listed) == expected
    assert count_orders(counts, length) == len(expected)


@pytest.mark.parametrize("objective", OBJECTIVES)
def test_multiset_assignment_equals_exhaustive_assignment(objective):
    graph = synthetic_graph(8, seed=7)
    boards = ["rpi4", "jetson_nano", "rpi4", "jetson_nano"]
    ranking = rank_splits(graph, boards, "eth100", objective, "auto", top=1)
    expected = exhaustive(graph, boards, "eth100", objective, [4],
                          lambda k: itertools.permutations(boards, k))
    assert ranking.best.objective_value(objective) == pytest.approx(expected)


def check_order_search_against_brute_force(search, objective, n_layers, seed, boards, link,
                                           any_count):
    """``search`` (the multiset order search for ``objective``) finds a feasible split with at
    most the given boards whose objective equals exhaustive enumeration of every order."""
    graph = synthetic_graph(n_layers, seed=seed)
    ctx, _ = build_context(graph, [load_platform(b) for b in boards], link, CostOptions())
    top = min(len(boards), n_layers)
    allowed = tuple(range(1, top + 1)) if any_count else (top,)
    found = search(ctx, ctx.boards.counts, allowed)
    expected = exhaustive(graph, boards, link, objective, allowed,
                          lambda k: set(itertools.permutations(boards, k)))
    if expected is None:
        assert found is None
        return
    order, cuts = found
    split = ctx.evaluate(order, cuts)
    assert split.feasible and len(order) in allowed
    assert not Counter(order) - Counter(boards)  # no board used more often than given
    measured = split.period_ms if objective == "throughput" else split.latency_ms
    assert measured == pytest.approx(expected)


SMALL_CLUSTERS = given(
    n_layers=st.integers(3, 7),
    seed=st.integers(0, 500),
    boards=st.lists(st.sampled_from(KINDS), min_size=1, max_size=4),
    link=st.sampled_from(["gige", "wifi", "ble"]),
    any_count=st.booleans(),
)


@SLOW
@SMALL_CLUSTERS
def test_min_bottleneck_order_equals_brute_force(n_layers, seed, boards, link, any_count):
    check_order_search_against_brute_force(min_bottleneck_order, "throughput", n_layers, seed,
                                           boards, link, any_count)


def test_many_orders_use_the_multiset_searches_for_throughput_and_latency(monkeypatch):
    graph = synthetic_graph(9, seed=2)
    boards = ["rpi4", "jetson_nano", "rpi5", "rpi4", "coral_edgetpu"]
    objectives = ("throughput", "latency")
    exact = [rank_splits(graph, boards, "wifi", o, "auto", top=1, stages="auto").best
             for o in objectives]
    monkeypatch.setattr(assign_module, "ORDER_LIMIT", 0)  # every order is one too many
    for objective, best in zip(objectives, exact, strict=True):
        searched = rank_splits(graph, boards, "wifi", objective, "auto", top=1, stages="auto")
        assert searched.best.objective_value(objective) == pytest.approx(
            best.objective_value(objective))
    with pytest.raises(ScheduleError, match=r"assign='auto' by energy .* exceed the exact search"):
        rank_splits(graph, boards, "wifi", "energy", "auto", top=1)


def test_more_stages_than_boards_is_an_error():
    with pytest.raises(ScheduleError, match="stages 3 is more than the 2 boards given"):
        rank_splits(synthetic_graph(9), ["rpi4", "rpi4"], "gige", stages=3)


def test_the_report_names_the_idle_boards_and_why():
    from hwsched.cuts import PROXY_RANKING, enumerate_cuts, rank_by_proxy
    from hwsched.report.analysis import analysis_to_dict
    from hwsched.report.facts import hardware_section
    from hwsched.report.html import render_html

    graph = synthetic_graph(12, seed=3)
    cuts = enumerate_cuts(graph)
    ranking = rank_splits(graph, ["rpi4"] * 4, "ble", stages="auto")
    assert ranking.idle_boards  # over BLE the tiny graph does not pay for four boards
    document = analysis_to_dict(graph, cuts, rank_by_proxy(cuts, None), PROXY_RANKING, None)
    document.update({k: v for k, v in ranking.to_dict().items() if k != "model"})
    document["hardware"] = hardware_section(["rpi4"], "ble")
    page = render_html(document)
    assert f"Idle: {', '.join(ranking.idle_boards)}" in page
    others = [len(c.stages) for c in ranking.best_by_stage_count
              if len(c.stages) != len(ranking.best.stages)]
    assert others and all(f"{n} stage{'s' * (n > 1)}: " in ranking.idle_reason for n in others)


def test_auto_assignment_never_tries_orders_that_only_swap_identical_boards():
    from hwsched.schedule.assign import search_plan

    graph = synthetic_graph(12, seed=1)
    boards = ["rpi4"] * 4 + ["jetson_nano"] * 4
    ctx, _ = build_context(graph, [load_platform(b) for b in boards], "gige", CostOptions())
    orders = search_plan(ctx, "throughput", "auto", (8,)).orders
    assert len(orders) == len(set(orders)) == 70  # 8! / (4! 4!), not 8! = 40,320
    assert set(orders) == set(itertools.permutations(boards))


@SLOW
@SMALL_CLUSTERS
def test_min_latency_order_equals_brute_force(n_layers, seed, boards, link, any_count):
    check_order_search_against_brute_force(min_latency_order, "latency", n_layers, seed,
                                           boards, link, any_count)
