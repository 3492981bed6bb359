"""Tiled candidates ranked with the chain splits: the DP's plans against exhaustive search, the
joint order against a sort, the memory sweep against the arena planner, and the CLI round trip
``analyze --tiles`` → ``export --analysis F --candidate N``."""

from __future__ import annotations

import dataclasses
import json

import keras
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from hwsched.cli import main
from hwsched.costs.memory import arena
from hwsched.documents.analysis import AnalysisDocument, TiledCandidateEntry
from hwsched.hardware import BUILTIN_DIR, load_link, load_platform
from hwsched.schedule.tiles import join_ranked, ranking_key, tiled_candidates
from hwsched.tiles.memory import tile_activation_bytes
from hwsched.tiles.planning import (
    TileCoster,
    boards_from_platforms,
    link_from_descriptor,
    optimal_cost,
    proportional_cost,
)
from hwsched.tiles.receptive import Region, Span, fused_run, tile_plan
from tests.test_tiles_planning import _exhaustive, _tileable, graphs


# -- the DP's candidates against exhaustive search ------------------------------------------------
def _free_boards():
    """rpi5 and rpi4 without per-stage overhead, on an instant link: splits pay off even on
    the tiny graphs exhaustive search can enumerate."""
    boards = [dataclasses.replace(load_platform(n), invoke_overhead_ms=0.0)
              for n in ("rpi5", "rpi4")]
    link = dataclasses.replace(load_link("gige"), message_latency_ms=0.0, bandwidth_bps=1e15)
    return boards, link


def _coster(graph, platforms, link, order):
    boards = boards_from_platforms(graph, platforms)
    return TileCoster(graph, tuple(boards[k] for k in order), link_from_descriptor(link))


@settings(max_examples=25, deadline=None)
@given(graph=graphs(max_layers=3))
def test_each_candidate_lies_between_exhaustive_optima_of_its_root(graph):
    platforms, link = _free_boards()
    found = {c.order: c for c in tiled_candidates(graph, platforms, link)}
    for order in ((0, 1), (1, 0)):
        coster = _coster(graph, platforms, link, order)
        proportional = _exhaustive(coster, proportional_cost)
        exact = _exhaustive(coster, optimal_cost)
        alone = coster.boards[0].overhead_ms + sum(coster.boards[0].layer_ms)
        if order in found:  # DP over proportional strips, then exact strips for its runs
            assert exact - 1e-9 <= found[order].latency_ms <= proportional + 1e-9
            assert found[order].latency_ms < alone
        else:  # no candidate for this root: nothing split beats the root alone
            assert proportional == pytest.approx(alone, rel=1e-9)


@settings(max_examples=25, deadline=None)
@given(graph=graphs(max_layers=3))
def test_a_candidates_period_is_its_busiest_board_or_link_end(graph):
    platforms, link = _free_boards()
    for candidate in tiled_candidates(graph, platforms, link):
        record = candidate.to_dict()
        # oracle: each board's work summed from the listed tiles (latency less transfer)
        work = dict.fromkeys(record["boards"], 0.0)
        root = record["boards"][0]
        work[root] = sum(candidate.coster.boards[0].layer_ms) + candidate.coster.boards[0].\
            overhead_ms
        for segment in candidate.plan.segments:
            if segment.tiled is None:
                continue
            for k, tile in enumerate(segment.tiled.tiles):
                work[record["boards"][k]] += tile.compute_ms + (tile.overhead_ms if k else 0)
            work[root] -= sum(candidate.coster.boards[0].layer_ms[p]
                              for p in segment.tiled.run.positions)
        if any(s.channels is not None for s in candidate.plan.segments):
            continue  # parts are priced by the same rule; rows only here
        assert record["period_ms"] >= max(work.values()) - 1e-9
        assert record["throughput_ips"] == pytest.approx(1000.0 / record["period_ms"])


# -- the joint order ------------------------------------------------------------------------------
_records = st.lists(st.fixed_dictionaries({
    "latency_ms": st.integers(1, 5).map(float), "period_ms": st.integers(1, 5).map(float),
    "energy_mj": st.integers(1, 5).map(float), "feasible": st.booleans()}), max_size=6)


@given(ranked=_records, tiled=_records, objective=st.sampled_from(["latency", "throughput",
                                                                     "energy"]))
def test_joint_order_is_a_stable_sort_with_existing_entries_first(ranked, tiled, objective):
    ranked = sorted(ranked, key=lambda r: ranking_key(r, objective))
    ranked = [{"rank": i + 1, "id": f"c{i}", **r} for i, r in enumerate(ranked)]
    tiled = [{"placement": "tiles", "id": f"t{i}", **r} for i, r in enumerate(tiled)]
    joined, moved = join_ranked(ranked, tiled, objective)
    oracle = sorted([(ranking_key(r, objective), 0, i, r["id"]) for i, r in enumerate(ranked)]
                    + [(ranking_key(r, objective), 1, i, r["id"]) for i, r in enumerate(tiled)])
    assert [e["id"] for e in joined] == [row[-1] for row in oracle]
    assert [e["rank"] for e in joined] == list(range(1, len(joined) + 1))
    for entry in ranked:
        new = moved[entry["rank"]]
        assert joined[new - 1]["id"] == entry["id"]
        assert joined[new - 1]["chain_rank"] == entry["rank"]
        assert joined[new - 1]["placement"] == "chain"


# -- memory of a tile -----------------------------------------------------------------------------
@settings(max_examples=40, deadline=None)
@given(graph=graphs(max_layers=4))
def test_a_whole_map_tile_peaks_like_the_arena_planner_over_its_run(graph):
    end = max(p for p in range(1, len(graph)) if _tileable(graph, 1, p))
    run = fused_run(graph, 1, end)
    shape = graph.tensor(run.output).shape
    whole = tile_plan(graph, run, Region(Span(0, shape[1]), Span(0, shape[2])))
    peak = max(int(arena(graph, "fp32").live_bytes[p]) for p in run.positions)
    regions = [*whole.inputs, *((t.tensor, t.output) for t in whole.layers)]
    if all(r.shape(graph.tensor(n).shape) == graph.tensor(n).shape for n, r in regions):
        assert tile_activation_bytes(graph, whole) == peak
    else:  # a tile reads only what its output needs (not the row a valid stride skips)
        assert tile_activation_bytes(graph, whole) <= peak
    if shape[1] >= 2:  # a strip never needs more than the whole map
        strip = tile_plan(graph, run, Region(Span(0, shape[1] // 2), Span(0, shape[2])))
        assert tile_activation_bytes(graph, strip) <= tile_activation_bytes(graph, whole)


# -- the CLI round trip ---------------------------------------------------------------------------
def _conv_stack(path, size=48):
    inputs = keras.Input(batch_shape=(1, size, size, 16), name="x")
    x = inputs
    for i in range(4):
        x = keras.layers.Conv2D(64, 3, padding="same", activation="relu", name=f"c{i}")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    keras.Model(inputs, keras.layers.Dense(4, name="fc")(x)).save(path)


@pytest.fixture(scope="module")
def analysed(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiled")
    _conv_stack(root / "stack.keras")
    base = ["analyze", str(root / "stack.keras"), "--platforms", "rpi5,rpi4", "--link", "gige",
            "--objective", "latency", "--no-report"]
    assert main([*base, "--json", str(root / "plain.json")]) == 0
    assert main([*base, "--tiles", "--json", str(root / "tiled.json")]) == 0
    return root


def test_tiled_candidates_join_the_ranking_and_leave_chain_entries_as_they_were(analysed):
    plain = json.loads((analysed / "plain.json").read_text())["candidates"]
    joined = json.loads((analysed / "tiled.json").read_text())["candidates"]
    tiled = [c for c in joined if c["placement"] == "tiles"]
    chain = [c for c in joined if c["placement"] == "chain"]
    assert tiled and [c["rank"] for c in joined] == list(range(1, len(joined) + 1))
    assert [{k: v for k, v in c.items() if k not in ("rank", "placement", "chain_rank")}
            for c in chain] == [{k: v for k, v in c.items() if k != "rank"} for c in plain]
    assert [c["chain_rank"] for c in chain] == [c["rank"] for c in plain]
    latencies = [c["latency_ms"] for c in joined]
    assert latencies == sorted(latencies)  # --objective latency, every candidate feasible
    best = tiled[0]
    assert best["latency_ms"] < plain[0]["latency_ms"]  # the stack is worth sharing
    for segment in best["tiles"]:
        spans = [t["rows"] for t in segment["tiles"]]
        assert spans[0][0] == 0 and spans[-1][1] == 48
        assert all(set(t["halo"]) == {"rows", "cols"} for t in segment["tiles"])
        assert [t["board"] for t in segment["tiles"]] == best["boards"][:len(spans)]
    document = AnalysisDocument.from_dict(json.loads((analysed / "tiled.json").read_text()))
    entry = document.candidate(best["rank"])
    assert isinstance(entry, TiledCandidateEntry) and entry.export_tiles == best["export_tiles"]


def test_export_candidate_writes_the_tiled_plan_the_analysis_ranked(analysed):
    doc = json.loads((analysed / "tiled.json").read_text())
    best = next(c for c in doc["candidates"] if c["placement"] == "tiles")
    out = analysed / "split"
    assert main(["export", str(analysed / "stack.keras"), "--analysis",
                 str(analysed / "tiled.json"), "--candidate", str(best["rank"]), "--out",
                 str(out), "--samples", "4", "--calibration", "random:8"]) == 0
    plan = json.loads((out / "plan.json").read_text())
    assert plan["prediction"]["analysis"]["rank"] == best["rank"]
    assert plan["prediction"]["latency_ms"] == best["latency_ms"]
    for run, segment in zip(plan["tiles"], best["tiles"], strict=True):
        assert [t["rows"] for t in run["tiles"]] == [t["rows"] for t in segment["tiles"]]
        assert [t["halo"] for t in run["tiles"]] == [t["halo"] for t in segment["tiles"]]
    assert main(["verify", str(out)]) == 0


def test_export_candidate_refuses_other_boards_in_one_line(analysed, capsys):
    doc = json.loads((analysed / "tiled.json").read_text())
    best = next(c for c in doc["candidates"] if c["placement"] == "tiles")
    code = main(["export", str(analysed / "stack.keras"), "--analysis",
                 str(analysed / "tiled.json"), "--candidate", str(best["rank"]), "--platforms",
                 "jetson_nano", "--out", str(analysed / "no")])
    assert code == 2
    assert "--platforms contradicts candidate" in capsys.readouterr().err


def _small_board(tmp_path):
    data = yaml.safe_load((BUILTIN_DIR / "platforms" / "rpi4.yaml").read_text())
    data["name"] = "tinyboard"
    data["memory"]["ram_mib"] = {"value": 0.1, "estimate": "a board too small for the tiles"}
    path = tmp_path / "tinyboard.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_export_tiles_refuses_a_tile_over_its_boards_memory_unless_forced(analysed, tmp_path,
                                                                          capsys):
    board = _small_board(tmp_path)
    argv = ["export", str(analysed / "stack.keras"), "--tiles", "c0..c3:2", "--platforms",
            f"rpi4,{board}", "--samples", "2", "--calibration", "random:4"]
    assert main([*argv, "--out", str(tmp_path / "no")]) == 2
    err = capsys.readouterr().err
    assert "stage 2 (c0..c3 on tinyboard)" in err and "pass --force" in err
    assert not (tmp_path / "no").exists()
    assert main([*argv, "--out", str(tmp_path / "forced"), "--force"]) == 0


def test_analyze_marks_a_tiled_candidate_over_memory_infeasible(analysed, tmp_path):
    board = _small_board(tmp_path)
    out = tmp_path / "a.json"
    assert main(["analyze", str(analysed / "stack.keras"), "--platforms", f"rpi5,{board}",
                 "--link", "gige", "--tiles", "--no-report", "--json", str(out)]) == 0
    tiled = [c for c in json.loads(out.read_text())["candidates"] if c["placement"] == "tiles"]
    assert tiled and all(not c["feasible"] for c in tiled if "tinyboard" in c["boards"][:2])
    assert any("tinyboard" in r for c in tiled for r in c["reasons"])


def test_tiles_join_a_ranking_of_chain_and_graph_candidates_keeping_their_ranks_true(
        analysed, tmp_path):
    out = tmp_path / "g.json"
    assert main(["analyze", str(analysed / "stack.keras"), "--platforms", "rpi5,rpi4",
                 "--link", "gige", "--placement", "graph", "--tiles", "--no-report",
                 "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    by_rank = {c["rank"]: c for c in doc["candidates"]}
    assert sorted(by_rank) == list(range(1, len(by_rank) + 1))
    for record in doc["graph_candidates"]:  # each names its own entry of the joint list
        entry = by_rank[record["rank"]]
        assert entry["placement"] == "graph" and entry["stages"] == record["stages"]
    assert [(r["rank"], r["kind"]) for r in doc["placement_ranking"]] == [
        (c["rank"], c["placement"]) for c in doc["candidates"]]
