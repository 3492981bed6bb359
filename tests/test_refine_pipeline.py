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


def _run(throughput_ips: float, core_ms: tuple[float, float]) -> EmulationResult:
    stages = tuple(StageMeasure(k, "rpi4", (k,), 50, ms / 2, ms / 2, 0.5, None,
                                cpu_ms_per_frame=ms) for k, ms in enumerate(core_ms))
    return EmulationResult("digits_cnn", 2, 50, True, True, throughput_ips, None, {}, None,
                           0.0, stages, (), None, None, 1.0, source_cpu_ms_per_frame=0.0,
                           sink_cpu_ms_per_frame=0.0)


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), charged=st.booleans())
def test_pipeline_refine_ranks_splits_by_their_runs(digits, monkeypatch, data, charged):
    """Whatever each run measures, the refined order is the runs' order by throughput, and
    each measured split's predicted throughput is the one its run measured (periods of
    10-100 ms, far above the gige link's and the runner's modelled cost)."""
    import hwsched.cli.analyze as analyze

    loaded, ranking = digits
    runs: dict[tuple[int, ...], EmulationResult] = {}

    def fake_run(_loaded, candidate, frames, speeds=None, progress=None):
        assert frames == 50 and speeds is None
        key = candidate.cut_positions
        if key not in runs:
            ips = data.draw(st.floats(10.0, 100.0), label=f"ips {key}")
            period = 1e3 / ips
            cores = data.draw(st.tuples(st.floats(0.1, 0.99), st.floats(0.1, 0.99)))
            runs[key] = _run(ips, (cores[0] * period, cores[1] * period))
        return runs[key]

    monkeypatch.setattr(analyze, "run_split", fake_run)
    refinement = analyze.refine_by_measurement(
        loaded, ranking.candidates, "throughput", 3, runtime=COST, by="pipeline", frames=50,
        charged=charged)
    measured = {c.cut_positions: runs[c.cut_positions].throughput_ips
                for c in refinement.candidates}
    assert set(measured) == set(runs)
    for candidate in refinement.candidates:
        assert candidate.throughput_ips == pytest.approx(measured[candidate.cut_positions])
    order = [measured[c.cut_positions] for c in refinement.candidates]
    assert order == sorted(order, reverse=True)


def test_a_core_busier_than_the_period_keeps_its_own_time():
    """A measured core load above the period (CPU counted over the warm-up too) is not cut
    down to the period; the period raises only the busiest core."""
    assert pipeline_stage_ms([5.0, 3.0], [4.0, 2.0], [0.5, 0.5], 4.0) == [5.0, 3.0]
    assert pipeline_stage_ms([1.0, 3.0], [0.5, 2.0], [0.5, 0.5], 4.0) == [1.0, 4.0]


@pytest.mark.parametrize("option", [["--refine-by", "pipeline"], ["--refine-frames", "30"]])
def test_refine_options_without_refine_are_one_line(tmp_path, capsys, option):
    argv = ["analyze", str(tmp_path / "absent.keras"), "--platforms", "rpi4,rpi5", *option,
            "--no-report"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and option[0] in err[0] and "--refine K" in err[0]


def test_analyze_refine_by_pipeline_runs_the_splits(tmp_path):
    """End to end on a tiny model: the splits are exported and run by the runners; each
    measured split's predicted throughput is at most what its run delivered (the period is
    the run's, or a link slower than it), and the run's parts are in the JSON."""
    out = tmp_path / "a.json"
    argv = ["analyze", "digits_cnn", "--platforms", "rpi4,rpi5", "--precision", "fp32",
            "--refine", "2", "--refine-by", "pipeline", "--refine-frames", "40",
            "--no-report", "--json", str(out)]
    assert main(argv) == 0
    rows = json.loads(out.read_text())["refinement"]["candidates"]
    assert len([r for r in rows if r["refine_round"] == 0]) == 2
    for row in rows:
        stages = row["stages"]
        delivered = {s["measured_throughput_ips"] for s in stages}
        assert len(delivered) == 1 and delivered.pop() > 0
        assert row["throughput_ips"] <= stages[0]["measured_throughput_ips"] * (1 + 1e-9)
        for stage in stages:
            assert stage["latency_source"] == "measured"
            assert stage["busy_ms"] > 0 and stage["core_cpu_ms_per_frame"] > 0
            # each stage's time: its core's load, the busiest raised to the period
            assert stage["latency_ms"] >= min(stage["core_cpu_ms_per_frame"],
                                              stage["measured_period_ms"]) * (1 - 1e-9)
