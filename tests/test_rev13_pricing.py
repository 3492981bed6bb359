"""Review of issue 13's pricing: chain candidates pay a paced profile's wake once per stage, as
graph candidates do, so both are ranked on one basis. Oracles: stage times hand-computed from
the profile's own numbers, and brute force over every cut."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwsched.costs.placement import PlacementCoster
from hwsched.costs.profile import parse_profile
from hwsched.hardware import load_platform
from hwsched.placement import Board, chain_placement
from hwsched.schedule import evaluate, rank_splits
from hwsched.schedule.synthetic import synthetic_graph

OVERHEAD_MS = load_platform("rpi4").invoke_overhead_ms
BOUNDS = [0, 4, 8, 12]
PACED, BACK_TO_BACK = [3.0, 2.0, 1.5], [2.5, 1.2, 1.1]  # excess 0.5, 0.8, 0.4: wake 0.4
WAKE_MS = 0.4


def _profile(graph, back_to_back=True):
    segments = []
    for k, (first, stop) in enumerate(itertools.pairwise(BOUNDS)):
        entry = {"first_layer": graph.layers[first].name,
                 "last_layer": graph.layers[stop - 1].name, "latency_ms": PACED[k]}
        if back_to_back:
            entry["back_to_back_ms"] = BACK_TO_BACK[k]
        segments.append(entry)
    return parse_profile({"kind": "hwsched-profile", "model": graph.name, "platform": "rpi4",
                          "precision": "fp32", "segments": segments, "gap_ms": 50.0})


def _stage_ms(segments: range, wake_ms: float) -> float:
    """A stage made of whole segments: each loses the overhead and the wake, the stage pays
    each once."""
    return sum(PACED[k] - wake_ms - OVERHEAD_MS for k in segments) + OVERHEAD_MS + wake_ms


def test_a_chain_stage_pays_the_wake_once_not_once_per_segment():
    graph = synthetic_graph(12, seed=0)
    split = evaluate(graph, ["rpi4", "rpi4"], "gige", (8,), profile=_profile(graph))
    assert split.stages[0].cost.latency_ms == pytest.approx(_stage_ms(range(2), WAKE_MS))
    assert split.stages[1].cost.latency_ms == pytest.approx(PACED[2])  # one segment: as timed


def test_old_profile_chain_stage_is_the_sum_of_its_paced_segments():
    graph = synthetic_graph(12, seed=0)
    split = evaluate(graph, ["rpi4", "rpi4"], "gige", (8,), profile=_profile(graph, False))
    assert split.stages[0].cost.latency_ms == pytest.approx(_stage_ms(range(2), 0.0))


@pytest.mark.parametrize("assign", ["fixed", "auto"])
def test_the_chain_dp_ranks_on_the_graph_basis(assign):
    """Every ranked chain costs what the placement coster (graph candidates' evaluator) says,
    and the DP's best latency is the brute-force minimum over every cut of hand-computed
    stage times at segment bounds."""
    graph = synthetic_graph(12, seed=0)
    profile = _profile(graph)
    boards = (Board("a", "rpi4"), Board("b", "rpi4"))
    coster = PlacementCoster(graph, boards, "gige", profile=profile)
    ranking = rank_splits(graph, ["rpi4", "rpi4"], "gige", profile=profile, stages=2,
                          objective="latency", assign=assign)
    for candidate in ranking.candidates[:6]:
        cost = coster.evaluate(chain_placement(graph, boards, candidate.cut_positions))
        assert [s.compute_ms for s in cost.stages] == pytest.approx(
            [s.cost.latency_ms for s in candidate.stages], abs=1e-9)
    for cut, k in ((4, 1), (8, 2)):
        stage_sum = _stage_ms(range(k), WAKE_MS) + _stage_ms(range(k, 3), WAKE_MS)
        assert stage_sum < sum(PACED)  # the wake once per stage is cheaper than per segment
        chain = evaluate(graph, ["rpi4", "rpi4"], "gige", (cut,), profile=profile)
        assert sum(s.cost.latency_ms for s in chain.stages) == pytest.approx(stage_sum)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(0.0, 50.0), st.floats(0.0, 50.0)), min_size=1, max_size=5),
       st.one_of(st.none(), st.tuples(st.floats(0.0, 90.0), st.floats(0.0, 90.0))))
def test_the_wake_leaves_every_segment_at_least_its_back_to_back_time(pairs, whole):
    """Whatever the timings: the wake is >= 0, and a settled segment is never below 0 nor
    below the same segment timed back to back (the wake is the least excess)."""
    graph = synthetic_graph(len(pairs) + 1, seed=1)
    segments = [{"first_layer": graph.layers[k].name, "last_layer": graph.layers[k].name,
                 "latency_ms": paced, "back_to_back_ms": b2b}
                for k, (paced, b2b) in enumerate(pairs)]
    document = {"model": graph.name, "platform": "rpi4", "segments": segments, "gap_ms": 50.0}
    if whole is not None:
        document["whole_latency_ms"], document["whole_back_to_back_ms"] = whole
    profile = parse_profile(document)
    assert profile.wake_ms >= 0.0
    for segment, (paced, b2b) in zip(profile.settled().segments, pairs, strict=True):
        assert segment.latency_ms >= min(paced, b2b) - 1e-9
        assert segment.latency_ms >= 0.0
        assert segment.latency_ms <= paced


def test_pacing_variants_of_other_segments_are_one_error_not_an_index_error():
    from hwsched.errors import ProfileError
    from hwsched.runtime.profile import with_pacing_variants

    def timed(*ms):
        return {"segments": [{"positions": [k, k + 1], "latency_ms": x}
                             for k, x in enumerate(ms)], "whole_latency_ms": None}

    with pytest.raises(ProfileError, match="1 segments for back_to_back_ms, the paced "
                                           "profile 2"):
        with_pacing_variants(timed(3.0, 2.0), timed(2.0))
    merged = with_pacing_variants(timed(3.0, 2.0), timed(2.5, 1.5))
    assert [s["back_to_back_ms"] for s in merged["segments"]] == [2.5, 1.5]
