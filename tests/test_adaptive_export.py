"""``export --adaptive K``: the bandwidth ranges where each split wins (against brute force), and
the exported plan — every alternative's stages equal the whole model run by hand, identical
stage files shared, a stale alternative refused before streaming, bad options refused before
the model loads."""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwsched.cli import main
from hwsched.hardware import load_link
from hwsched.schedule import evaluate, rank_splits
from hwsched.schedule.sweep import (
    EDGE_RTOL,
    choose_splits,
    log_grid,
    range_shares,
    split_ranges,
    sweep_winners,
)
from hwsched.schedule.synthetic import synthetic_graph

PAIR = ["rpi4", "jetson_nano"]
TRIO = ["rpi4", "rpi4", "jetson_nano"]


def _period(graph, platforms, link, bandwidth_mbps, cuts) -> float:
    """The split's predicted period at one bandwidth, by the public one-split evaluation."""
    fast = dataclasses.replace(link, bandwidth_bps=bandwidth_mbps * 1e6)
    return evaluate(graph, platforms, fast, cuts).period_ms


def _every_split(graph, stages):
    return list(itertools.combinations(range(1, len(graph)), stages - 1))


# -- the pure part: winners and their ranges ---------------------------------------------------
@settings(max_examples=6, deadline=None)
@given(seed=st.integers(0, 1000), n_layers=st.integers(5, 9), boards=st.sampled_from([PAIR, TRIO]))
def test_each_sweep_winner_is_the_best_of_every_split(seed, n_layers, boards):
    graph = synthetic_graph(n_layers, seed=seed)
    link = load_link("gige")
    grid = log_grid(0.1, 10_000.0, 5)
    winners = dict(sweep_winners(graph, boards, link, grid))
    assert sum(winners.values()) == len(grid)
    for bandwidth in grid:
        best = min(_period(graph, boards, link, bandwidth, s)
                   for s in _every_split(graph, len(boards)))
        won = [s for s in winners if _period(graph, boards, link, bandwidth, s) <= best * (
            1 + 1e-12)]
        assert won, f"no winner listed is the best split at {bandwidth} Mbit/s"


def _check_ranges(ranges):
    """Contiguous from 0 to infinity, each non-empty."""
    assert ranges[0].bandwidth_mbps_low == 0.0 and math.isinf(ranges[-1].bandwidth_mbps_high)
    for a, b in itertools.pairwise(ranges):
        assert a.bandwidth_mbps_high == b.bandwidth_mbps_low
    assert all(r.bandwidth_mbps_low < r.bandwidth_mbps_high for r in ranges)


@settings(max_examples=6, deadline=None)
@given(seed=st.integers(0, 1000), n_layers=st.integers(5, 9), boards=st.sampled_from([PAIR, TRIO]))
def test_ranges_hold_the_best_split_at_every_bandwidth(seed, n_layers, boards):
    """Brute force on a grid four times finer than the sweep's: the split whose range holds a
    bandwidth is the best of the set there (away from a boundary's bisection tolerance)."""
    graph = synthetic_graph(n_layers, seed=seed)
    link = load_link("gige")
    splits = _every_split(graph, len(boards))[:6]
    grid = log_grid(0.1, 10_000.0, 6)
    ranges = split_ranges(graph, boards, link, splits, grid)
    _check_ranges(ranges)
    assert sum(range_shares(ranges, grid[0], grid[-1]).values()) == pytest.approx(1.0)
    bounds = [r.bandwidth_mbps_low for r in ranges[1:]]
    for bandwidth in log_grid(0.1, 10_000.0, 21):
        (holder,) = [r for r in ranges if r.contains(bandwidth)]
        periods = {s: _period(graph, boards, link, bandwidth, s) for s in splits}
        best = min(periods.values())
        near = any(abs(math.log(bandwidth / b)) <= 2 * EDGE_RTOL for b in bounds)
        exact = bandwidth in grid
        if exact or not near:
            assert periods[holder.cut_positions] <= best * (1 + 1e-12), (bandwidth, holder)


def test_a_slow_link_is_won_by_the_smallest_crossing_and_a_fast_one_by_the_balanced_cut():
    graph = synthetic_graph(12, seed=7)
    link = load_link("gige")
    boards = ["rpi4", "rpi4"]
    splits = _every_split(graph, 2)
    ranges = split_ranges(graph, boards, link, splits, log_grid(1e-4, 1e6, 11))
    crossing = {s: evaluate(graph, boards, link, s).links[0].transfer_bytes for s in splits}
    slowest, fastest = ranges[0].cut_positions, ranges[-1].cut_positions
    assert crossing[slowest] == min(crossing.values())
    busiest = {s: max(st.cost.latency_ms for st in evaluate(graph, boards, link, s).stages)
               for s in splits}
    assert busiest[fastest] == min(busiest.values())
    assert slowest != fastest


def test_ties_go_to_the_earlier_split_and_one_split_covers_everything():
    graph = synthetic_graph(6, seed=1)
    (only,) = split_ranges(graph, PAIR, "gige", [(3,), (3,)], [1.0, 10.0])
    assert only.cut_positions == (3,) and only.bandwidth_mbps_low == 0.0
    assert math.isinf(only.bandwidth_mbps_high)


def test_choose_splits_keeps_the_first_then_the_winners_then_the_users():
    assert choose_splits((5,), [(5,), (7,), (9,)], 2) == ((5,), (7,))
    assert choose_splits((5,), [(7,)], 3) == ((5,), (7,))  # fewer winners than asked
    assert choose_splits((5,), [(7,), (9,)], 2, extra=[(9,), (5,)]) == ((5,), (7,), (9,))


# -- the export --------------------------------------------------------------------------------
ROOT = Path(__file__).resolve().parents[1]
BOARDS = "rpi4*3"
USER_CUTS = (4, 20)


@pytest.fixture(scope="module")
def adaptive_dir(tmp_path_factory):
    """digits_cnn over three equal boards joined by Gigabit Ethernet: the balanced cut wins
    the fast end, a cut with a tiny crossing tensor the slow end; the user's 4,20 shares its
    first stage with one and its last with the other."""
    out = tmp_path_factory.mktemp("adaptive") / "split"
    argv = ["export", "digits_cnn", "--platforms", BOARDS, "--adaptive", "2",
            "--cut-positions", ",".join(map(str, USER_CUTS)), "--precision", "fp32",
            "--samples", "4", "--out", str(out)]
    assert main(argv) == 0
    return out


def _plan(directory: Path) -> dict:
    return json.loads((directory / "plan.json").read_text())


def test_alternatives_cover_the_bandwidths_and_the_top_split_is_rank_1(adaptive_dir):
    from hwsched.load import load_model

    plan = _plan(adaptive_dir)
    alts = plan["alternatives"]
    assert [a["id"] for a in alts] == list(range(len(alts))) and len(alts) >= 3
    graph = load_model("digits_cnn").graph
    boards = ["rpi4"] * 3
    rank1 = rank_splits(graph, boards, "gige", stages=3, top=1, precision="fp32").best
    assert plan["cut_positions"] == list(rank1.cut_positions) == alts[0]["cut_positions"]
    assert [s["file"] for s in plan["stages"]] == [s["file"] for s in alts[0]["plan"]["stages"]]
    assert alts[0]["bandwidth_mbps_low"] <= 1000 < (alts[0]["bandwidth_mbps_high"] or math.inf)
    assert USER_CUTS in {tuple(a["cut_positions"]) for a in alts}
    won = sorted((a for a in alts if a["bandwidth_mbps_high"] is None
                  or a["bandwidth_mbps_low"] < a["bandwidth_mbps_high"]),
                 key=lambda a: a["bandwidth_mbps_low"])
    assert len({tuple(a["cut_positions"]) for a in won}) >= 2  # the winner really changes
    assert won[0]["bandwidth_mbps_low"] == 0 and won[-1]["bandwidth_mbps_high"] is None
    for a, b in itertools.pairwise(won):
        assert a["bandwidth_mbps_high"] == b["bandwidth_mbps_low"]
    # inside each range its split is the best of the exported ones (public evaluation)
    link = load_link("gige")
    exported = {tuple(a["cut_positions"]) for a in alts}
    for alt in won:
        low, high = alt["bandwidth_mbps_low"], alt["bandwidth_mbps_high"] or math.inf
        inside = (math.sqrt(low * high) if low > 0 and math.isfinite(high)
                  else (high / 2 if low == 0 else low * 2))
        periods = {s: _period(graph, boards, link, inside, s) for s in exported}
        assert periods[tuple(alt["cut_positions"])] == min(periods.values())


def _alternative_dir(adaptive_dir: Path, alt: dict, where: Path) -> Path:
    """The alternative's nested plan as a plan directory of its own (files linked, not
    copied), so the tests' hand-run chain reads it like any export."""
    where.mkdir()
    (where / "plan.json").write_text(json.dumps(alt["plan"]))
    for stage in alt["plan"]["stages"]:
        (where / stage["file"]).symlink_to(adaptive_dir / stage["file"])
    return where


def test_every_alternative_chain_equals_the_whole_model(adaptive_dir, tmp_path):
    import keras
    from handchain import assert_split_equals_keras

    from hwsched.datasets import digits

    model = keras.models.load_model(ROOT / "models" / "digits_cnn.keras")
    images = digits("test").images[:6]
    samples = [{"image": images[i:i + 1]} for i in range(len(images))]
    for alt in _plan(adaptive_dir)["alternatives"]:
        verification = alt["plan"]["verification"]
        assert verification["passed"] and verification["samples"] == 4
        alt_dir = _alternative_dir(adaptive_dir, alt, tmp_path / f"alt{alt['id']}")
        assert_split_equals_keras(alt_dir, model, samples, ["classifier"], tolerance=1e-5)


def test_the_runners_stage_code_runs_every_alternative_from_the_one_directory(adaptive_dir):
    """What a switching runtime does: load an alternative's stages by its nested plan from the
    plan's own directory (shared files and all) and chain them; equal to the whole model."""
    import keras

    from hwsched.datasets import digits
    from hwsched.deployment import load_plan
    from hwsched.runtime.interpreter import StageModel
    from hwsched.runtime.routing import hop_specs

    model = keras.models.load_model(ROOT / "models" / "digits_cnn.keras")
    images = digits("test").images[:4]
    plan = load_plan(adaptive_dir)
    for alt in plan.alternatives:
        stages = [StageModel(alt.plan, adaptive_dir, k) for k in range(len(alt.plan.stages))]
        (entry,) = hop_specs(alt.plan, 0)
        for i in range(len(images)):
            hop = {entry: images[i:i + 1].astype(np.float32)}
            for stage in stages:
                hop = stage.run(hop)
            np.testing.assert_allclose(hop["classifier"], np.asarray(model(images[i:i + 1])),
                                       rtol=1e-5, atol=1e-6)


def test_identical_stage_files_are_written_once_and_shared(adaptive_dir):
    plan = _plan(adaptive_dir)
    refs = [(a["id"], s) for a in plan["alternatives"] for s in a["plan"]["stages"]]
    by_sha: dict[str, set[str]] = {}
    for _, stage in refs:
        by_sha.setdefault(stage["sha256"], set()).add(stage["file"])
        assert hashlib.sha256((adaptive_dir / stage["file"]).read_bytes()).hexdigest() == \
            stage["sha256"]
    assert all(len(files) == 1 for files in by_sha.values())  # one file per content
    on_disk = sorted(adaptive_dir.glob("*.tflite"))
    contents = [hashlib.sha256(p.read_bytes()).hexdigest() for p in on_disk]
    assert len(set(contents)) == len(contents)  # no duplicate bytes on disk
    assert {p.name for p in on_disk} == {s["file"] for _, s in refs}  # nothing unreferenced
    # the user's 4,20 shares stage 0 with one winner and stage 2 with another
    shared = [sha for sha in by_sha if len({i for i, s in refs if s["sha256"] == sha}) > 1]
    assert len(shared) >= 2
    for alt in plan["alternatives"]:  # each file is named after a split that has it
        for stage in alt["plan"]["stages"]:
            owners = {"cut" + "-".join(map(str, a["cut_positions"]))
                      for a in plan["alternatives"]
                      if any(s["sha256"] == stage["sha256"] for s in a["plan"]["stages"])}
            assert stage["file"].split("_", 1)[0] in owners


def test_verify_and_reexport_accept_the_adaptive_directory(adaptive_dir, capsys):
    """``hwsched verify`` re-proves the top-level chain and every other alternative's; an
    adaptive export is an earlier export that may be replaced (its alternatives' files are
    its own)."""
    from hwsched.export.api import _check_target

    capsys.readouterr()
    assert main(["verify", str(adaptive_dir)]) == 0
    printed = capsys.readouterr().out
    others = _plan(adaptive_dir)["alternatives"][1:]
    for alt in others:
        assert f"alternative {alt['id']} (cut positions " in printed
    assert printed.count("passed") == 1 + len(others)
    _check_target(adaptive_dir)  # refused "holds 'cut…'" before alternatives were counted


def _tampered_copy(adaptive_dir: Path, tmp_path: Path) -> tuple[Path, str]:
    """A copy whose file used only by a non-top alternative has one byte changed."""
    copy = tmp_path / "copy"
    shutil.copytree(adaptive_dir, copy)
    plan = _plan(copy)
    top = {s["file"] for s in plan["stages"]}
    victim = next(s["file"] for a in plan["alternatives"][1:] for s in a["plan"]["stages"]
                  if s["file"] not in top)
    data = bytearray((copy / victim).read_bytes())
    data[-1] ^= 0xFF
    (copy / victim).write_bytes(bytes(data))
    return copy, victim


def test_emulate_refuses_a_tampered_alternative_before_streaming(adaptive_dir, tmp_path, capsys):
    from hwsched.errors import PlanError
    from hwsched.runtime.emulate import EmulationConfig, emulate

    copy, victim = _tampered_copy(adaptive_dir, tmp_path)
    assert main(["emulate", str(copy), "--frames", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and victim in err and "sha256" in err
    assert "Traceback" not in err
    # the plan's own check, before any process starts (a stage that refused its plan would
    # end the run with a TransportError carrying the stage's last line instead)
    with pytest.raises(PlanError, match=victim):
        emulate(copy, EmulationConfig(frames=2))


def test_the_runner_refuses_a_missing_alternative_file(adaptive_dir, tmp_path):
    """As a process, the way a board runs it (a watchdog ends it if it ever started)."""
    import subprocess
    import sys

    from digitsplit import RUNNER

    copy, victim = _tampered_copy(adaptive_dir, tmp_path)
    (copy / victim).unlink()
    argv = [str(copy), "--stage", "0", "--listen", "tcp://127.0.0.1:1",
            "--next", "tcp://127.0.0.1:2", "--max-runtime", "120"]
    done = subprocess.run([sys.executable, "-c", RUNNER, *argv], capture_output=True,
                          text=True, timeout=600)
    err = done.stderr.strip()
    assert done.returncode == 2, err
    assert len(err.splitlines()) == 1 and victim in err and "missing" in err


# -- refusals ----------------------------------------------------------------------------------
@pytest.mark.parametrize(("extra", "expected"), [
    (["--adaptive", "1", "--platforms", "rpi4,rpi4"], "--adaptive 1"),
    (["--adaptive", "2", "--platforms", "rpi4,rpi4", "--stages", "1"], "single board"),
    (["--adaptive", "2", "--platforms", "rpi4"], "single board"),
    (["--adaptive", "2", "--platforms", "rpi4,rpi4", "--stages", "auto"], "fixed stage count"),
    (["--adaptive", "2", "--mapping", "m.yaml"], "cannot take --mapping"),
    (["--adaptive", "2", "--analysis", "a.json", "--candidate", "1", "--platforms", "rpi4,rpi4"],
     "cannot take --analysis"),
    (["--adaptive", "2", "--platforms", "rpi4,rpi4", "--compress", "int8"],
     "cannot take --compress"),
    (["--adaptive", "2", "--platforms", "rpi4,rpi4", "--objective", "latency"],
     "ranks by throughput"),
    (["--adaptive", "2", "--platforms", "rpi4,rpi4", "--sweep-bandwidth", "5:1"],
     "--sweep-bandwidth '5:1'"),
    (["--platforms", "rpi4,rpi4", "--sweep-bandwidth", "1:10"], "--adaptive K"),
    (["--platforms", "rpi4,rpi4"], "give one of --cuts"),
])
def test_bad_adaptive_options_fail_before_the_model_loads(extra, expected, tmp_path, capsys):
    argv = ["export", "no_such_model", *extra, "--out", str(tmp_path / "out")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert expected in err and "unknown model" not in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("extra", "expected"), [
    (["--candidate", "999"], "the ranking has only"),
    (["--cut-positions", "3,9,15"], "make 4 stages"),
    (["--cut-positions", "0"], "cut"),
    (["--sweep-bandwidth", "1000:100000:3"], "one split wins everywhere"),
])
def test_a_candidate_that_is_not_a_split_of_the_plan_is_refused_before_converting(
        extra, expected, tmp_path, capsys):
    argv = ["export", "digits_cnn", "--platforms", "rpi4,rpi4", "--adaptive", "2", *extra,
            "--out", str(tmp_path / "out")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert expected in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.*"))


def test_the_winning_split_changes_over_the_default_sweep_of_two_equal_boards():
    """The pair the CLI tests use really has two winners around Gigabit Ethernet."""
    from hwsched.load import load_model
    from hwsched.schedule.sweep import default_adaptive_range

    graph = load_model("digits_cnn").graph
    grid = log_grid(*default_adaptive_range("gige"))
    assert len(sweep_winners(graph, ["rpi4"] * 3, "gige", grid)) >= 2
    assert np.isclose(grid[len(grid) // 2], 1000.0)


@pytest.mark.parametrize(("boards", "link_name", "count"), [
    (["rpi4"] * 3, "gige", 3),
    (["rpi4"] * 3, "eth100", 3),  # two winners tie on grid points; one holds nothing between
    (["rpi4"] * 4, "gige", 2),  # a winner ties with the rank-1 split: it adds nothing
])
def test_the_splits_kept_are_those_winning_most_of_the_range_by_brute_force(
        boards, link_name, count):
    """Sampled finely (ten points between two of the sweep's), no winner left out is strictly
    best over more of the range, in log bandwidth, than a kept one (the rank-1 split is always
    kept)."""
    from hwsched.export.adaptive import choose_adaptive
    from hwsched.load import load_model
    from hwsched.schedule.sweep import default_adaptive_range

    graph = load_model("digits_cnn").graph
    sweep = default_adaptive_range(link_name)
    choice = choose_adaptive(graph, boards, link_name, count, sweep, stages=len(boards))
    kept = [s.cut_positions for s in choice.splits]
    winners = [w for w, _, _ in choice.winners]
    assert len(winners) > count  # so that some winner is left out
    link = load_link(link_name)
    strictly_best = {w: 0 for w in winners}
    samples = log_grid(sweep[0], sweep[1], 10 * (sweep[2] - 1) + 1)
    for bandwidth in samples:
        periods = sorted((_period(graph, boards, link, bandwidth, w), w) for w in winners)
        if periods[0][0] < periods[1][0]:
            strictly_best[periods[0][1]] += 1
    chosen = [strictly_best[s] for s in kept[1:] if s in strictly_best]
    left_out = [strictly_best[w] for w in winners if w not in kept]
    assert chosen and min(chosen) >= max(left_out)


def test_an_adaptive_plan_streams_its_own_split_and_equals_the_model(adaptive_dir, tmp_path):
    """The checks before streaming pass a sound adaptive plan (in the parent and in every
    runner), and the top-level split streams as any plan does."""
    from digitsplit import unsplit_outputs

    frames, outputs = 6, tmp_path / "outputs.npz"
    assert main(["emulate", str(adaptive_dir), "--frames", str(frames), "--data", "digits",
                 "--outputs", str(outputs)]) == 0
    saved = np.load(outputs)
    (name,) = saved.files
    np.testing.assert_allclose(saved[name], unsplit_outputs(frames), rtol=1e-4, atol=1e-5)


def test_the_rank_1_split_holds_the_links_own_bandwidth_even_outside_the_swept_range():
    from hwsched.export.adaptive import choose_adaptive
    from hwsched.load import load_model

    graph = load_model("digits_cnn").graph
    boards = ["rpi4"] * 3
    choice = choose_adaptive(graph, boards, "gige", 2, (1.0, 100.0, 5), stages=3)
    own = choice.splits[0]
    rank1 = rank_splits(graph, boards, "gige", stages=3, top=1).best
    assert own.cut_positions == rank1.cut_positions
    assert own.bandwidth_mbps_low <= 1000.0 < own.bandwidth_mbps_high
    below = [s for s in choice.splits if s.bandwidth_mbps_high <= own.bandwidth_mbps_low]
    assert below and below[0].bandwidth_mbps_low == 0.0  # the swept range's own winner
