"""Issue 13: a paced profile's wake charged once per stage, and co-running branches priced
co-run. Oracles: hand-computed stage times from the profile's own numbers, and the chain
evaluator (unchanged code) for profiles without the new fields."""

from __future__ import annotations

import copy
import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hwsched.costs.placement import PlacementCoster, co_run_duration_ms
from hwsched.costs.profile import parse_profile
from hwsched.documents.profile import ProfileDocument
from hwsched.errors import ProfileError
from hwsched.hardware import load_platform
from hwsched.placement import Board, Stage, chain_placement, placement_from_stages
from hwsched.schedule import evaluate, rank_splits
from hwsched.schedule.synthetic import synthetic_graph
from tests.placement_models import assert_branches_satisfy_co_run_equation

OVERHEAD_MS = load_platform("rpi4").invoke_overhead_ms


def _segments(graph, bounds, paced, back_to_back=None):
    segments = []
    for k, (first, stop) in enumerate(itertools.pairwise(bounds)):
        entry = {"first_layer": graph.layers[first].name,
                 "last_layer": graph.layers[stop - 1].name, "latency_ms": paced[k]}
        if back_to_back is not None:
            entry["back_to_back_ms"] = back_to_back[k]
        segments.append(entry)
    return segments


def _profile(graph, segments, **extra):
    return {"kind": "hwsched-profile", "model": graph.name, "platform": "rpi4",
            "precision": "fp32", "segments": segments, "gap_ms": 50.0, **extra}


# -- the wake once per stage ---------------------------------------------------------------------
def test_wake_is_charged_once_per_stage_not_once_per_segment():
    graph = synthetic_graph(12, seed=0)
    bounds = [0, 4, 8, 12]
    paced, back_to_back = [3.0, 2.0, 1.5], [2.5, 1.2, 1.1]  # excess 0.5, 0.8, 0.4
    profile = parse_profile(_profile(graph, _segments(graph, bounds, paced, back_to_back)))
    assert profile.wake_ms == pytest.approx(0.4)
    boards = (Board("a", "rpi4"), Board("b", "rpi4"))
    cost = PlacementCoster(graph, boards, "gige", profile=profile).evaluate(
        chain_placement(graph, boards, (8,)))
    wake = 0.4
    # stage 0 is segments 0 and 1: each loses the wake (and the invoke overhead), the stage
    # pays each once; stage 1 is segment 2 whole, so it is exactly its paced time
    first = (3.0 - wake - OVERHEAD_MS) + (2.0 - wake - OVERHEAD_MS) + OVERHEAD_MS + wake
    assert cost.stages[0].compute_ms == pytest.approx(first, abs=1e-9)
    assert cost.stages[1].compute_ms == pytest.approx(1.5, abs=1e-9)
    before = (3.0 - OVERHEAD_MS) + (2.0 - OVERHEAD_MS) + OVERHEAD_MS  # summed paced segments
    assert before - cost.stages[0].compute_ms == pytest.approx(wake, abs=1e-9)


def test_the_whole_model_bounds_the_wake():
    graph = synthetic_graph(8, seed=2)
    segments = _segments(graph, [0, 4, 8], [3.0, 2.0], [2.0, 1.0])
    profile = parse_profile(_profile(graph, segments, whole_latency_ms=4.5,
                                     whole_back_to_back_ms=4.2))
    assert profile.wake_ms == pytest.approx(0.3)
    faster_back_to_back = parse_profile(_profile(graph, _segments(graph, [0, 4, 8], [3.0, 2.0],
                                                                  [3.1, 1.0])))
    assert faster_back_to_back.wake_ms == 0.0  # never a negative wake


def test_old_profiles_parse_and_price_exactly_as_before():
    """A profile without the new fields (or with back-to-back times on only some segments)
    has no wake, and every stage is what the unchanged chain evaluator charges."""
    graph = synthetic_graph(12, seed=0)
    old = _profile(graph, _segments(graph, [0, 4, 8, 12], [3.0, 2.0, 1.5]))
    partial = copy.deepcopy(old)
    partial["segments"][0]["back_to_back_ms"] = 1.0
    boards = (Board("a", "rpi4"), Board("b", "rpi4"))
    for document in (old, partial):
        profile = parse_profile(document)
        assert profile.wake_ms is None and profile.settled() is profile
        assert profile.co_running() is None
        coster = PlacementCoster(graph, boards, "gige", profile=profile)
        ranking = rank_splits(graph, ["rpi4", "rpi4"], "gige", profile=profile, stages=2)
        for candidate in ranking.candidates[:5]:
            chain = evaluate(graph, ["rpi4", "rpi4"], "gige", candidate.cut_positions,
                             profile=profile)
            cost = coster.evaluate(chain_placement(graph, boards, candidate.cut_positions))
            assert [s.compute_ms for s in cost.stages] == pytest.approx(
                [s.cost.latency_ms for s in chain.stages], abs=1e-9)
            assert cost.latency_ms == pytest.approx(chain.latency_ms, abs=1e-9)


def test_new_fields_round_trip_and_bad_values_are_one_line():
    graph = synthetic_graph(8, seed=2)
    document = _profile(graph, _segments(graph, [0, 4, 8], [3.0, 2.0], [2.0, 1.0]),
                        whole_latency_ms=4.5, whole_back_to_back_ms=4.2)
    document["segments"][0]["co_run_ms"] = 3.5
    written = ProfileDocument.from_dict(document).to_dict()
    assert written["segments"][0]["back_to_back_ms"] == 2.0
    assert written["segments"][0]["co_run_ms"] == 3.5
    assert written["whole_back_to_back_ms"] == 4.2
    bad = copy.deepcopy(document)
    bad["segments"][1]["back_to_back_ms"] = -1.0
    with pytest.raises(ProfileError, match=r"segments\[1\].*'back_to_back_ms'"):
        parse_profile(bad, "p.json")


# -- co-running branches -------------------------------------------------------------------------
#: Per layer of a stem / two-branch / join graph: paced ms and co-run ms.
BRANCH_TIMES = {"image": (0.0, 0.0), "stem": (1.0, 1.0), "a0": (10.0, 12.0),
                "b0": (5.0, 6.0), "join": (0.5, 0.5), "pool": (0.3, 0.3), "logits": (0.2, 0.2)}


@pytest.fixture(scope="module")
def branch_graph():
    from hwsched.load.keras_reader import read_keras_model
    from tests.placement_models import two_branch_model

    return read_keras_model(two_branch_model(size=8, channels=4, depth=1), "two_branch")[0]


def _branch_profile(graph, co_run: bool):
    segments = [{"first_layer": layer.name, "last_layer": layer.name,
                 "latency_ms": BRANCH_TIMES[layer.name][0],
                 "back_to_back_ms": BRANCH_TIMES[layer.name][0],  # no wake: co-run alone
                 **({"co_run_ms": BRANCH_TIMES[layer.name][1]} if co_run else {})}
                for layer in graph.layers]
    return parse_profile(_profile(graph, segments))


def _branch_placement(graph):
    """Stem, branch a and the join on core 0, branch b on core 1 of one chip."""
    board = Board("chip", "rpi4")
    at = graph.position
    stages = [Stage("chip", [at("image"), at("stem")], (0,)), Stage("chip", [at("a0")], (0,)),
              Stage("chip", [at("b0")], (1,)),
              Stage("chip", [at("join"), at("pool"), at("logits")], (0,))]
    return placement_from_stages(graph, (board,), stages)


def test_co_running_branches_are_priced_for_their_overlap(branch_graph):
    placement = _branch_placement(branch_graph)
    board = (Board("chip", "rpi4"),)
    by_name = {frozenset(branch_graph.layers[p].name for p in s.layers): i
               for i, s in enumerate(placement.stages)}
    a = by_name[frozenset({"a0"})]
    b = by_name[frozenset({"b0"})]
    join = by_name[frozenset({"join", "pool", "logits"})]
    alone = PlacementCoster(branch_graph, board, "gige",
                            profile=_branch_profile(branch_graph, False)).evaluate(placement)
    coster = PlacementCoster(branch_graph, board, "gige",
                             profile=_branch_profile(branch_graph, True))
    cost = coster.evaluate(placement)
    join_ms = 0.5 + 0.3 + 0.2 - 2 * OVERHEAD_MS  # three segments, one invocation
    # alone: stem 1, branch a 10 (b's 5 beside it), join
    assert alone.latency_ms == pytest.approx(1.0 + 10.0 + join_ms, abs=1e-9)
    # co-run: b (5 alone, 6 co-run) overlaps a all its time -> 6 ms; a overlaps b for those
    # 6 ms, in which it does 6/12 of its work, and the other half alone in 5 ms -> 11 ms
    assert cost.stages[b].compute_ms == pytest.approx(6.0, abs=1e-6)
    assert cost.stages[a].compute_ms == pytest.approx(11.0, abs=1e-6)
    assert cost.stages[a].start_ms == cost.stages[b].start_ms == pytest.approx(1.0)
    assert cost.stages[join].start_ms == pytest.approx(12.0, abs=1e-6)
    assert cost.latency_ms == pytest.approx(12.0 + join_ms, abs=1e-6)
    assert cost.period_ms == pytest.approx(alone.period_ms, abs=1e-9)  # throughput: alone
    partners = coster.co_run_partners(cost)
    assert partners[a] == b and partners[b] == a and partners[join] is None


def test_boards_of_one_chip_contend_only_when_named_together(branch_graph):
    at = branch_graph.position
    boards = (Board("core0", "rpi4", (0,)), Board("core1", "rpi4", (1,)))
    stages = [Stage("core0", [at("image"), at("stem")]), Stage("core0", [at("a0")]),
              Stage("core1", [at("b0")]), Stage("core0", [at("join"), at("pool"), at("logits")])]
    placement = placement_from_stages(branch_graph, boards, stages)
    profile = _branch_profile(branch_graph, True)
    apart = PlacementCoster(branch_graph, boards, "gige", profile=profile).evaluate(placement)
    shared = PlacementCoster(branch_graph, boards, "gige", profile=profile,
                             shared_chips=[("core0", "core1")]).evaluate(placement)
    assert [s.compute_ms for s in apart.stages] == pytest.approx(
        [1.0, 10.0, 5.0, 1.0 - 2 * OVERHEAD_MS])
    assert shared.latency_ms > apart.latency_ms


@pytest.mark.parametrize("alone,co,overlap", [(10.0, 12.0, 3.0), (4.0, 9.0, 9.0),
                                              (2.0, 2.5, 0.7)])
def test_co_run_duration_plays_the_work_out(alone, co, overlap):
    """Oracle: step the work through time in small steps (co-run speed while overlapped)."""
    step, work, t = 1e-4, 0.0, 0.0
    while work < 1.0:
        work += step / (co if t < overlap else alone)
        t += step
    assert co_run_duration_ms(alone, co, overlap) == pytest.approx(t, abs=2e-3)


def test_the_graph_search_charges_the_wake_once_per_stage_too(branch_graph):
    """The DP's value is the evaluator's for its best placement (no co-run timings): it adds
    the wake with each stage's invoke overhead (it missed it before)."""
    from hwsched.schedule.graph_search import search_graph_placements

    segments = [{"first_layer": x.name, "last_layer": x.name,
                 "latency_ms": BRANCH_TIMES[x.name][0] + 0.25,
                 "back_to_back_ms": BRANCH_TIMES[x.name][0]} for x in branch_graph.layers]
    profile = parse_profile(_profile(branch_graph, segments))
    assert profile.wake_ms == pytest.approx(0.25)
    boards = (Board("core0", "rpi4"), Board("core1", "rpi4"))
    report = search_graph_placements(
        PlacementCoster(branch_graph, boards, "gige", profile=profile), boards)
    best = min(c.latency_ms for c in report.candidates)
    assert report.latency_optimum_ms == pytest.approx(best, abs=1e-9)
    assert not report.notes


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(a=st.floats(0.5, 30.0), b=st.floats(0.5, 30.0), slow_a=st.floats(1.0, 2.0),
       slow_b=st.floats(1.0, 2.0))
def test_the_co_run_schedule_is_self_consistent(branch_graph, a, b, slow_a, slow_b):
    """Whatever the times: each branch lasts between its alone and co-run time, and its
    duration satisfies the defining equation with the overlap of the final schedule."""
    times = {**BRANCH_TIMES, "a0": (a, a * slow_a), "b0": (b, b * slow_b)}
    segments = [{"first_layer": x.name, "last_layer": x.name,
                 "latency_ms": times[x.name][0], "back_to_back_ms": times[x.name][0],
                 "co_run_ms": times[x.name][1]} for x in branch_graph.layers]
    coster = PlacementCoster(branch_graph, (Board("chip", "rpi4"),), "gige",
                             profile=parse_profile(_profile(branch_graph, segments)))
    placement = _branch_placement(branch_graph)
    cost = coster.evaluate(placement)
    assert_branches_satisfy_co_run_equation(coster, placement, cost, abs=1e-6)
