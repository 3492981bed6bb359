"""``analyze --refine K --refine-by pipeline``: splits measured by running them with the
runners, as ``hwsched emulate`` does, and re-ranked on what the runs measured."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hwsched.cli import main
from hwsched.costs.runtime import RuntimeCost
from hwsched.runtime.emulate import EmulationResult, StageMeasure
from hwsched.schedule.refine import pipeline_stage_ms

#: A runner cost small beside the drawn periods (ms), so the test's order is the runs'.
COST = RuntimeCost(frame_ms=0.05, per_byte_ms=1e-7)


@pytest.fixture(scope="module")
def digits():
    from hwsched.load import load_model
    from hwsched.schedule import rank_splits

    loaded = load_model("digits_cnn")
    return loaded, rank_splits(loaded.graph, ["rpi4", "rpi5"], "gige", precision="fp32")


def _run(throughput_ips: float, stage_ms: tuple[float, float], source_ms: float,
         sink_ms: float) -> EmulationResult:
    stages = tuple(StageMeasure(k, "rpi4", (k,), 50, ms / 2, ms / 2, 0.5, None,
                                cpu_ms_per_frame=ms) for k, ms in enumerate(stage_ms))
    return EmulationResult("digits_cnn", 2, 50, True, True, throughput_ips, None, {}, None,
                           0.0, stages, (), None, None, 1.0, source_cpu_ms_per_frame=source_ms,
                           sink_cpu_ms_per_frame=sink_ms)


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), charged=st.booleans(), passes=st.sampled_from([1, 2]))
def test_pipeline_refine_ranks_splits_by_the_period_each_run_sustained(digits, monkeypatch, data,
                                                                      charged, passes):
    """Whatever each run measures, a measured split's predicted period is the period its run
    sustained (drawn here around its busiest core's CPU per frame — the first core's stage
    and source, the second's stage and sink —, 10% under to 30% over: a warm-up counted, a
    pipeline that waits), no other stage's time longer than it nor than its own core's load,
    and the refined order is that period's (loads of 10-100 ms, far above the gige link's and
    the runner's modelled cost)."""
    import hwsched.cli.analyze as analyze

    loaded, ranking = digits
    runs: dict[tuple[int, ...], EmulationResult] = {}
    period: dict[tuple[int, ...], float] = {}
    loads: dict[tuple[int, ...], tuple[float, float]] = {}

    def fake_run(_loaded, candidate, frames, speeds=None, progress=None, descriptors=None,
                 link=None):
        assert frames == 50 and speeds is None
        key = candidate.cut_positions
        if key not in runs:
            stage = data.draw(st.tuples(st.floats(10.0, 90.0), st.floats(10.0, 90.0)))
            source, sink = data.draw(st.tuples(st.floats(0.0, 10.0), st.floats(0.0, 10.0)))
            loads[key] = (stage[0] + source, stage[1] + sink)
            period[key] = max(loads[key]) * data.draw(st.floats(0.9, 1.3))
            runs[key] = _run(1000.0 / period[key], stage, source, sink)
        return runs[key]

    monkeypatch.setattr(analyze, "run_split", fake_run)
    refinement = analyze.refine_by_measurement(
        loaded, ranking.candidates, "throughput", 3, runtime=COST, by="pipeline", frames=50,
        charged=charged, passes=passes)
    assert {c.cut_positions for c in refinement.candidates} == set(runs)
    for candidate in refinement.candidates:
        key = candidate.cut_positions
        assert candidate.period_ms == pytest.approx(period[key])
        busiest = loads[key].index(max(loads[key]))
        expected = [period[key] if k == busiest else min(load, period[key])
                    for k, load in enumerate(loads[key])]
        assert [s.cost.latency_ms for s in candidate.stages] == pytest.approx(expected)
    periods = [period[c.cut_positions] for c in refinement.candidates]
    assert periods == sorted(periods)
    assert {k: refinement.to_dict()[k] for k in ("measured_by", "frames", "passes")} == {
        "measured_by": "pipeline", "frames": 50, "passes": passes}
    if passes > 1:  # each pass's stage time as ranked: the same run, the same time
        for candidate in refinement.candidates:
            for stage, extra in zip(candidate.stages, refinement.extras_of(candidate),
                                    strict=True):
                assert extra["pass_ms"] == pytest.approx([stage.cost.latency_ms] * passes)


@settings(max_examples=50, deadline=None)
@given(own=st.floats(0.1, 50.0), beside=st.floats(0.0, 20.0), speed=st.floats(0.05, 1.0))
def test_a_capped_stage_takes_its_own_cpu_over_its_share_of_the_core(own, beside, speed):
    """Uncapped, a stage's time is its core's load; capped at s of a core, its own CPU takes
    1/s as long while the rest runs in the share the cap leaves: never less than either."""
    core = own + beside
    uncapped, capped = (pipeline_stage_ms([own], [core], [own], [0.0], speeds=[s])[0]
                        for s in (None, speed))
    assert uncapped == pytest.approx(core)
    assert capped == pytest.approx(max(own / speed, core))


def test_a_stage_whose_cpu_was_not_measured_takes_its_busy_time_and_modelled_cost():
    assert pipeline_stage_ms([None, 3.0], [4.0, 3.5], [1.5, 2.6], [0.25, 0.3]) == [1.75, 3.5]


@pytest.mark.parametrize(("option", "said"), [
    (["--refine-by", "pipeline"], "--refine K"),
    (["--refine-frames", "30"], "--refine K"),
    (["--refine", "2", "--refine-frames", "30"], "--refine-by pipeline"),
    (["--refine", "2", "--refine-by", "pipeline", "--refine-frames", "5"], "at least 20"),
    (["--refine", "2", "--refine-by", "pipeline", "--objective", "latency"],
     "--objective throughput"),
    (["--refine", "2", "--refine-by", "pipeline", "--compress", "fp32,fp16"], "links as made"),
    (["--refine-passes", "2"], "--refine K"),
    (["--refine", "2", "--refine-passes", "3"], "1 or an even number"),
    (["--refine-confirm", "1"], "--refine K"),
])
def test_refine_options_that_cannot_run_are_one_line_before_the_model(tmp_path, capsys,
                                                                     option, said):
    argv = ["analyze", str(tmp_path / "absent.keras"), "--platforms", "rpi4,rpi5", *option,
            "--no-report"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and said in err[0] and "absent.keras" not in err[0]


def test_analyze_refine_by_pipeline_runs_the_splits(tmp_path):
    """End to end on a tiny model, one board a descriptor file (not in the registry, so the
    export must take the analysis's own): the splits are exported and run by the runners,
    each stage's time its core's load as the run measured it, the run's parts in the JSON."""
    import yaml

    from hwsched.hardware import BUILTIN_DIR

    board = yaml.safe_load((BUILTIN_DIR / "platforms" / "rpi4.yaml").read_text())
    descriptor = tmp_path / "my_board.yaml"
    descriptor.write_text(yaml.safe_dump({**board, "name": "my_board"}))
    cost = tmp_path / "runtime_cost.json"  # charged in the search: the stage times hold it
    cost.write_text(json.dumps({"frame_ms": 0.1, "per_byte_ms": 1e-6}))
    out = tmp_path / "a.json"
    argv = ["analyze", "digits_cnn", "--platforms", f"{descriptor},rpi5", "--precision", "fp32",
            "--refine", "2", "--refine-by", "pipeline", "--refine-frames", "40",
            "--runtime-cost", str(cost), "--no-report", "--json", str(out)]
    assert main(argv) == 0
    refinement = json.loads(out.read_text())["refinement"]
    assert (refinement["measured_by"], refinement["frames"]) == ("pipeline", 40)
    rows = refinement["candidates"]
    assert len([r for r in rows if r["refine_round"] == 0]) == 2
    assert {r["stages"][0]["platform"] for r in rows} == {"my_board"}
    for row in rows:
        stages = row["stages"]
        assert len({s["measured_throughput_ips"] for s in stages}) == 1
        for stage in stages:
            assert stage["latency_source"] == "measured"
            assert stage["busy_ms"] > 0
            assert stage["core_cpu_ms_per_frame"] >= stage["stage_cpu_ms_per_frame"] > 0
            # each core's load, the busiest the run's own period
            assert stage["latency_ms"] == pytest.approx(
                stage["measured_period_ms"] if stage is max(
                    stages, key=lambda s: s["core_cpu_ms_per_frame"])
                else min(stage["core_cpu_ms_per_frame"], stage["measured_period_ms"]))


@settings(max_examples=40, deadline=None)
@given(data=st.data(), drift=st.floats(-0.02, 0.05), repeats=st.sampled_from([2, 4]))
def test_passes_in_reverse_order_rank_through_a_linear_drift(data, drift, repeats):
    """The machine slows (or speeds up) by ``drift`` a measurement: one pass ranks the splits
    by when they were measured as much as by their times; two passes, the second in reverse
    order, give every split the same mean drift, so the rank is the splits' own (the oracle:
    the undrifted times drawn here)."""
    from hwsched.schedule import rank_splits
    from hwsched.schedule.refine import refine_iteratively, split_key
    from hwsched.schedule.synthetic import synthetic_graph

    ranking = rank_splits(synthetic_graph(12, seed=4), ["rpi4", "rpi5"], "gige")
    true: dict = {}
    calls = []

    def measure(candidate):
        key = split_key(candidate)
        if key not in true:  # far above the links' ms: the period is the busier stage
            true[key] = data.draw(st.tuples(st.floats(1e3, 9e3), st.floats(1e3, 9e3)))
        factor = 1.0 + drift * len(calls)
        calls.append(key)
        return [t * factor for t in true[key]], ({}, {})

    refined = refine_iteratively(ranking.candidates, 3, measure, "throughput", repeats=repeats)
    measured = [split_key(c) for c in refined.candidates]
    n = len(measured)
    assert len(calls) == repeats * n
    assert all(calls[(p + 1) * n:(p + 2) * n] == calls[p * n:(p + 1) * n][::-1]
               for p in range(repeats - 1))
    periods = [max(true[key]) for key in measured]
    assert periods == sorted(periods)
    assert refined.to_dict()["passes"] == repeats
    assert all(len(stage["pass_ms"]) == repeats for stage in refined.extras_of(refined.best))


def test_an_odd_number_of_passes_is_refused():
    """Three passes A B C, C B A, A B C put a linear drift's slots 11, 12, 13 on A, B, C:
    not alike, so refused."""
    from hwsched.errors import ScheduleError
    from hwsched.schedule.refine import refine_iteratively

    with pytest.raises(ScheduleError, match="1 or an even number"):
        refine_iteratively([], 3, lambda c: ([], ()), "throughput", repeats=3)


@pytest.mark.parametrize("error", [OSError(28, "No space left on device"),
                                   PermissionError(13, "Permission denied")])
def test_a_split_that_cannot_be_written_is_one_line_naming_it(digits, monkeypatch, error):
    """A full disk or an unwritable temporary directory while a split is exported for
    ``--refine-by pipeline`` is a ScheduleError naming the split (one line at the CLI), not a
    traceback; the temporary directory is gone."""
    import tempfile
    from pathlib import Path

    import hwsched.cli.analyze as analyze
    import hwsched.export as export_api
    from hwsched.errors import ScheduleError

    loaded, ranking = digits
    candidate = ranking.candidates[0]
    made: list[Path] = []

    def failing_export(_loaded, _boards, out_dir, **_kwargs):
        made.append(Path(out_dir).parent)
        raise error

    monkeypatch.setattr(export_api, "export", failing_export)
    with pytest.raises(ScheduleError) as raised:
        analyze.run_split(loaded, candidate, 20)
    message = str(raised.value)
    assert "\n" not in message and error.strerror in message
    assert f"split {list(candidate.cut_positions)}" in message
    assert made and not made[0].exists() and str(made[0]).startswith(tempfile.gettempdir())
