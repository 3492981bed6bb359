"""Tiled candidates priced from measured profiles, as the chain splits are: each board's
segments spread over their layers, a paced profile's wake after idle charged once per stage
(every tile and gather is a stage woken by its message). Oracles: hand arithmetic on the
profile's figures, exhaustive search over the plans, and the CLI's chain splits priced from
the same profile."""

from __future__ import annotations

import dataclasses
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwsched.cli import main
from hwsched.costs.latency import roofline
from hwsched.costs.profile import Profile, Segment
from hwsched.hardware import load_platform
from hwsched.ir import LayerGraph, OpKind
from hwsched.schedule.tiles import tiled_candidates
from hwsched.tiles.planning import (
    TileCoster,
    boards_from_platforms,
    link_from_descriptor,
    optimal_cost,
    proportional_cost,
)
from tests.test_tiles_candidates import _conv_stack, _free_boards
from tests.test_tiles_planning import _Builder, _exhaustive


def _stack(layers: int = 3) -> LayerGraph:
    b = _Builder(16, 16, channels=8)
    for _ in range(layers):
        b.window(OpKind.CONV2D, 3, 1, "same")
    return b.graph()


def _one_segment_profile(graph: LayerGraph, platform: str, paced_ms: float,
                         wake_ms: float) -> Profile:
    """The whole model as one paced segment, ``wake_ms`` slower than back to back."""
    first = next(layer.name for layer in graph.layers if layer.op is not OpKind.INPUT)
    return Profile(graph.name, platform,
                   (Segment(first, graph.layers[-1].name, paced_ms, paced_ms - wake_ms),),
                   gap_ms=50.0, whole_latency_ms=paced_ms,
                   whole_back_to_back_ms=paced_ms - wake_ms)


@settings(max_examples=30, deadline=None)
@given(paced=st.floats(5.0, 100.0), wake_share=st.floats(0.0, 0.9))
def test_a_profiled_board_spreads_its_settled_time_and_pays_the_wake_per_stage(paced,
                                                                              wake_share):
    graph = _stack()
    rpi4 = load_platform("rpi4")
    wake = paced * wake_share
    (board,) = boards_from_platforms(graph, [rpi4], "fp32",
                                     profiles=[_one_segment_profile(graph, "rpi4", paced, wake)])
    # one invocation of the whole model costs what was timed: its layers, its invocation, the
    # wake — the wake now in the per-stage cost, not spread over the layers
    assert board.overhead_ms == pytest.approx(rpi4.invoke_overhead_ms + wake)
    assert sum(board.layer_ms) == pytest.approx(paced - wake - rpi4.invoke_overhead_ms)
    assert board.overhead_ms + sum(board.layer_ms) == pytest.approx(paced)
    assert board.latency_source == "profile"
    shares = roofline(graph, rpi4, "fp32").latency_ms[1:]
    assert [ms / sum(board.layer_ms) for ms in board.layer_ms[1:]] == pytest.approx(
        list(shares / shares.sum()))
    (plain,) = boards_from_platforms(graph, [rpi4], "fp32", profiles=[None])
    assert plain.latency_source == "roofline" and plain.overhead_ms == rpi4.invoke_overhead_ms


@settings(max_examples=20, deadline=None)
@given(wake=st.floats(0.0, 40.0))
def test_the_plan_is_the_exhaustive_optimum_with_the_wake_charged_per_stage(wake):
    """With the wake charged per stage, the DP still finds the best plan (exhaustive search
    over the boards it builds), and once waking costs more than the whole model computes no
    split can pay: a tiled run adds at least its own tile's stage and its gather to a frame's
    path, each woken once."""
    graph = _stack()
    platforms, link = _free_boards()
    profiles = [_one_segment_profile(graph, p.name, 20.0 / speed + wake, wake)
                for p, speed in zip(platforms, (1.0, 0.8), strict=True)]
    boards = boards_from_platforms(graph, platforms, "fp32", profiles=profiles)
    coster = TileCoster(graph, boards, link_from_descriptor(link))
    alone = boards[0].overhead_ms + sum(boards[0].layer_ms)
    best = _exhaustive(coster, optimal_cost)
    found = [c for c in tiled_candidates(graph, platforms, link, "fp32", profiles=profiles)
             if c.order == (0, 1)]
    if found:  # the DP sizes strips in proportion, then exactly for the runs it chose
        assert best - 1e-9 <= found[0].latency_ms < alone
        assert found[0].latency_ms <= _exhaustive(coster, proportional_cost) + 1e-9
        assert found[0].to_dict()["latency_model"] == "measured"
    else:
        assert best >= alone - 1e-9
    if wake > sum(boards[0].layer_ms):
        assert best == pytest.approx(alone) and not found


def test_a_large_wake_turns_a_paying_tiling_into_none():
    graph = _stack()
    platforms, link = _free_boards()

    def candidates(wake):
        return tiled_candidates(graph, platforms, link, "fp32", profiles=[
            _one_segment_profile(graph, p.name, 20.0 + wake, wake) for p in platforms])

    assert candidates(0.0)  # equal boards, free link: sharing the convolutions pays
    assert not candidates(25.0)


def test_a_board_without_a_profile_keeps_the_roofline():
    graph = _stack()
    platforms, link = _free_boards()
    profiles = [_one_segment_profile(graph, platforms[0].name, 20.0, 1.0)]
    (candidate, *_) = tiled_candidates(graph, platforms, link, "fp32", profiles=profiles)
    assert [b.latency_source for b in candidate.coster.boards] == [
        "profile" if k == 0 else "roofline" for k in candidate.order]
    assert candidate.to_dict()["latency_model"] == "measured+roofline"


# -- the CLI ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def stack_and_profiles(tmp_path_factory):
    """The CLI test model and a profile per board timing it whole, 40 ms paced with 5 of
    them waking (rpi5) and 80 / 10 (rpi4)."""
    from hwsched.load import load_model

    root = tmp_path_factory.mktemp("profiled_tiles")
    _conv_stack(root / "stack.keras")
    graph = load_model(str(root / "stack.keras")).graph
    files = []
    for platform, paced, wake in (("rpi5", 40.0, 5.0), ("rpi4", 80.0, 10.0)):
        profile = _one_segment_profile(graph, platform, paced, wake)
        document = {
            "model": profile.model, "platform": platform, "gap_ms": profile.gap_ms,
            "whole_latency_ms": paced, "whole_back_to_back_ms": paced - wake,
            "segments": [{k: v for k, v in dataclasses.asdict(s).items() if v is not None}
                         for s in profile.segments],
        }
        path = root / f"{platform}.json"
        path.write_text(json.dumps(document))
        files.append(path)
    return root, files


def _analyze(root, name, files, *extra):
    out = root / f"{name}.json"
    assert main(["analyze", str(root / "stack.keras"), "--platforms", "rpi5,rpi4", "--link",
                 "gige", "--objective", "latency", "--no-report", "--tiles",
                 *(a for f in files for a in ("--profile", str(f))), *extra,
                 "--json", str(out)]) == 0
    return json.loads(out.read_text())


def _tiled(document):
    return [c for c in document["candidates"] if c["placement"] == "tiles"]


def test_analyze_prices_tiled_candidates_from_the_profiles_as_it_prices_the_chains(
        stack_and_profiles):
    root, files = stack_and_profiles
    document = _analyze(root, "profiled", files)
    chain = [c for c in document["candidates"] if c["placement"] == "chain"]
    assert document["tiles"]["latency_model"] == "measured"
    assert _tiled(document) and all(c["latency_model"] == "measured" for c in _tiled(document))
    # one board alone costs what its profile timed whole: its layers, invocation and wake
    assert document["tiles"]["best_single_board"].endswith(":rpi5")
    assert document["tiles"]["best_single_ms"] == pytest.approx(40.0)
    assert chain and all(s["latency_source"] == "profile" for c in chain for s in c["stages"])
    plain = _analyze(root, "roofline", [])
    assert plain["tiles"]["latency_model"] == "roofline"
    assert plain["tiles"]["best_single_ms"] != pytest.approx(40.0)


def test_analyze_with_the_roofline_asked_keeps_tiles_on_the_roofline(stack_and_profiles):
    root, files = stack_and_profiles
    document = _analyze(root, "asked", files, "--latency-model", "roofline")
    assert document["tiles"]["latency_model"] == "roofline"
    assert all(c["latency_model"] == "roofline" for c in _tiled(document))


def test_export_of_a_profiled_tiled_candidate_says_how_it_was_priced(stack_and_profiles):
    root, files = stack_and_profiles
    document = _analyze(root, "exported", files)
    best = _tiled(document)[0]
    out = root / "split"
    assert main(["export", str(root / "stack.keras"), "--analysis", str(root / "exported.json"),
                 "--candidate", str(best["rank"]), "--out", str(out), "--samples", "2",
                 "--calibration", "random:4"]) == 0
    prediction = json.loads((out / "plan.json").read_text())["prediction"]
    assert prediction["latency_model"] == "measured"
    assert prediction["latency_ms"] == best["latency_ms"]
    assert prediction["weights_charged"] is True
