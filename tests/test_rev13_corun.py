"""Review of issue 13's co-run schedule: it is the one where every stage's duration satisfies
the defining equation, whatever the slow-down (the iteration it replaced stopped 200 passes
short of it when co-run is many times slower than alone). Oracle: durations hand-computed by
playing the work out, and the defining equation with the final schedule's overlaps."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hwsched.costs.placement import PlacementCoster, co_run_duration_ms
from hwsched.costs.profile import parse_profile
from hwsched.placement import Board, Stage, placement_from_stages
from tests.placement_models import assert_branches_satisfy_co_run_equation

FIXED = {"image": 0.0, "stem": 1.0, "join": 0.5, "pool": 0.3, "logits": 0.2}


@pytest.fixture(scope="module")
def branch_graph():
    from hwsched.load.keras_reader import read_keras_model
    from tests.placement_models import two_branch_model

    return read_keras_model(two_branch_model(size=8, channels=4, depth=1), "two_branch")[0]


def _coster(graph, times):
    return PlacementCoster(graph, (Board("chip", "rpi4"),), "gige",
                           profile=_profile(graph, times))


def _profile(graph, times):
    """``times``: per branch layer ``(alone, co-run)`` ms; no wake (back to back = paced)."""
    both = {**{name: (ms, ms) for name, ms in FIXED.items()}, **times}
    segments = [{"first_layer": x.name, "last_layer": x.name, "latency_ms": both[x.name][0],
                 "back_to_back_ms": both[x.name][0], "co_run_ms": both[x.name][1]}
                for x in graph.layers]
    return parse_profile({"kind": "hwsched-profile", "model": graph.name, "platform": "rpi4",
                          "precision": "fp32", "segments": segments, "gap_ms": 50.0})


def _placement(graph):
    """Stem, branch a and the join on core 0, branch b on core 1 of one chip."""
    at = graph.position
    stages = [Stage("chip", [at("image"), at("stem")], (0,)), Stage("chip", [at("a0")], (0,)),
              Stage("chip", [at("b0")], (1,)),
              Stage("chip", [at("join"), at("pool"), at("logits")], (0,))]
    return placement_from_stages(graph, (Board("chip", "rpi4"),), stages)


def test_a_stage_co_run_all_its_time_lasts_its_co_run_time(branch_graph):
    """Branch a (1 ms alone, 60 ms co-run) runs wholly beside branch b (100 ms either way), so
    it lasts 60 ms exactly; the old iteration returned about 57.9 after its 200 passes."""
    coster = _coster(branch_graph, {"a0": (1.0, 60.0), "b0": (100.0, 100.0)})
    cost = coster.evaluate(_placement(branch_graph))
    assert cost.stages[1].compute_ms == pytest.approx(60.0, abs=1e-9)
    assert cost.stages[2].compute_ms == pytest.approx(100.0, abs=1e-9)
    assert cost.stages[3].start_ms == pytest.approx(1.0 + 100.0, abs=1e-9)


def test_the_short_stage_finishing_first_frees_the_long_one(branch_graph):
    """a: 4 alone / 40 co-run; b: 30 alone / 45 co-run. Both co-run until a ends at 40 (b has
    done 40/45 of its work), then b alone: 30 * 5/45 more -> 40 + 10/3."""
    coster = _coster(branch_graph, {"a0": (4.0, 40.0), "b0": (30.0, 45.0)})
    cost = coster.evaluate(_placement(branch_graph))
    assert cost.stages[1].compute_ms == pytest.approx(40.0, abs=1e-9)
    assert cost.stages[2].compute_ms == pytest.approx(40.0 + 30.0 * 5.0 / 45.0, abs=1e-9)


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(a=st.floats(0.1, 30.0), b=st.floats(0.1, 30.0), slow_a=st.floats(1.0, 100.0),
       slow_b=st.floats(1.0, 100.0))
def test_every_duration_satisfies_its_equation_at_any_slow_down(branch_graph, a, b, slow_a,
                                                                slow_b):
    coster = _coster(branch_graph, {"a0": (a, a * slow_a), "b0": (b, b * slow_b)})
    placement = _placement(branch_graph)
    cost = coster.evaluate(placement)
    assert_branches_satisfy_co_run_equation(coster, placement, cost, rel=1e-9, abs=1e-9)


def test_the_graph_search_calls_its_optimum_a_bound_under_co_run_pricing(branch_graph):
    """With co-run timings the DP adds alone times: no sentence may call its value exact, and
    it is indeed at most the evaluator's best; without them, the claim stays exact."""
    from hwsched.cli.graphs import search_summary
    from hwsched.schedule.graph_search import search_graph_placements

    boards = (Board("core0", "rpi4"), Board("core1", "rpi4"))
    times = {"a0": (10.0, 30.0), "b0": (10.0, 30.0)}
    coster = PlacementCoster(branch_graph, boards, "gige", profile=_profile(branch_graph, times),
                             shared_chips=[("core0", "core1")])
    report = search_graph_placements(coster, boards)
    words = [report.to_dict()["latency"], search_summary(report), *report.notes]
    assert not any("exact minimum" in w for w in words), words
    assert report.latency_optimum_ms <= min(c.latency_ms for c in report.candidates) + 1e-9
    alone = search_graph_placements(
        PlacementCoster(branch_graph, boards, "gige"), boards)
    assert "exact minimum" in alone.to_dict()["latency"]
    assert "exact minimum" in search_summary(alone)



@pytest.mark.parametrize("co_run", [False, True])
def test_stages_that_never_co_run_keep_their_alone_time_to_the_bit(branch_graph, co_run):
    """Old profiles (no co-run timings), and stages alone on their chip, price EXACTLY as
    before co-run pricing: the stage's compute is its alone time, not end minus start (which
    differs in the last bits once the start is not 0)."""
    times = {"a0": (0.1 + 0.2, 0.7 if co_run else 0.1 + 0.2), "b0": (0.3, 0.3)}
    coster = _coster(branch_graph, times)
    at = branch_graph.position
    stages = [Stage("chip", [at("image"), at("stem")], (0,)),
              Stage("chip", [at("a0"), at("b0")], (0,)),
              Stage("chip", [at("join"), at("pool"), at("logits")], (0,))]
    placement = placement_from_stages(branch_graph, (Board("chip", "rpi4"),), stages)
    cost = coster.evaluate(placement)
    for stage, estimate in zip(placement.stages, cost.stages, strict=True):
        assert estimate.compute_ms == coster.compute_ms(placement, stage)


def test_random_stage_dags_on_three_core_sets_satisfy_the_equation(monkeypatch):
    """Random one-frame schedules (up to 8 stages, 3 core sets of one chip, hops, stages of 0
    ms, co-run up to 60x slower): every stage's duration satisfies the defining equation with
    the union of its contenders' intervals, and none runs before its inputs or its core."""
    import random
    from types import SimpleNamespace as Fake

    import hwsched.costs.placement as coster_module

    monkeypatch.setattr(coster_module, "resource_of", lambda placement, stage: stage.core)
    monkeypatch.setattr(coster_module, "_link_of", lambda placement, edge: None)
    for seed in range(300):
        rng = random.Random(seed)
        count = rng.randint(2, 8)
        stages = [Fake(core=rng.choice("abc")) for _ in range(count)]
        edges = [Fake(source=s, target=t) for t in range(1, count) for s in range(t)
                 if rng.random() < 0.4]
        hops = [(None, None, None, Fake(latency_ms=rng.uniform(0, 3))) for _ in edges]
        alone = [rng.choice([0.0, rng.uniform(0.5, 10)]) for _ in range(count)]
        co = [ms * rng.uniform(1, 60) for ms in alone]
        contending = [frozenset(j for j in range(count) if stages[j].core != stages[i].core)
                      for i in range(count)]
        starts, ends, _, durations = coster_module._schedule_one_frame(
            Fake(stages=stages, edges=edges), alone, hops, co, contending)
        for i in range(count):
            others = [(starts[j], ends[j]) for j in contending[i]]
            overlap = coster_module._overlap_ms(starts[i], ends[i], others)
            want = co_run_duration_ms(alone[i], co[i], overlap)
            assert durations[i] == pytest.approx(want, rel=1e-9, abs=1e-9), (seed, i)
            assert ends[i] == pytest.approx(starts[i] + durations[i], rel=1e-12, abs=1e-12)
        for edge, hop in zip(edges, hops, strict=True):
            assert starts[edge.target] >= ends[edge.source] + hop[3].latency_ms - 1e-9
